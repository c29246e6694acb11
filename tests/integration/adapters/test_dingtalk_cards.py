"""DingTalkCardAdapter against the fake DingTalk API (with AI cards), state in real Redis:
cards go to the group (@asker) or the 1:1 chat, grow with throttled full-text updates, end
FINISHED; a redelivered turn finishes the same card; throttling never costs the answer; a
refused card turns cards off for the app; a card whose turn died is ended by the sweeper."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from adapters.dingtalk import DingTalkAdapter, cards, sweep
from adapters.dingtalk.streaming import DingTalkCardAdapter
from adapters.tokens import TokenCache
from bot import keys, runtime, wiring
from bot.domain import STREAM_RESTART, Platform, Reply
from bot.settings import DingTalkSettings
from tests.fakes.base import serve
from tests.fakes.dingtalk_api import TEMPLATE_ID, DingTalkFakeState, make_dingtalk_app

STAFF = "manager4220"
CID = "cidGroup=="


@pytest.fixture
def fake() -> Iterator[tuple[DingTalkFakeState, str]]:
    state = DingTalkFakeState()
    with serve(make_dingtalk_app(state)) as url:
        yield state, url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Clock:
    """A clock the test moves: the throttle sees exactly the time the test says."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_adapter(
    state: DingTalkFakeState,
    url: str,
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    clock: Clock,
    **overrides: Any,
) -> DingTalkCardAdapter:
    config: dict[str, Any] = {
        "app_key": state.app_key,
        "app_secret": state.app_secret,
        "api_base": url,
        "tokens": TokenCache(redis),
        "http_timeout_s": 2,
        "redis": redis,
        "card_template_id": TEMPLATE_ID,
        "card_updates_per_s": 2,
        "clock": clock,
    }
    adapter = DingTalkCardAdapter(**{**config, **overrides})
    adapter.use_session(http)
    return adapter


def reply(text: str = "", msg_id: str = "msgA==", *, group: bool = False) -> Reply:
    route = {
        "conversationType": "2" if group else "1",
        "conversationId": CID if group else "cidOne==",
        "senderStaffId": STAFF,
        "robotCode": "ding-fake-app",
    }
    return Reply(
        platform=Platform.DINGTALK,
        app="default",
        conversation_id=route["conversationId"],
        recipient_id=STAFF,
        text=text,
        in_reply_to=msg_id,
        is_group=group,
        route=route,
    )


async def _stream(adapter: DingTalkCardAdapter, clock: Clock, r: Reply, *pieces: str) -> None:
    sink = adapter.delta_sink(r)
    for piece in pieces:
        await sink(piece)
        clock.now += 1


async def test_a_group_card_grows_and_ends_finished_with_the_asker_mentioned(
    fake: tuple[DingTalkFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)
    await _stream(adapter, clock, reply(group=True), "您好，", "订单", "已发")
    sent = await adapter.send(reply("您好，订单已发货。", group=True), http)
    card = state.card()
    assert sent == card.out_track_id == cards.out_track_id("default", "msgA==")
    assert (card.template_id, card.space) == (TEMPLATE_ID, f"dtv1.card//IM_GROUP.{CID}")
    assert card.at_users == {STAFF: STAFF}
    # Created with the first words, then full texts, the last one final.
    assert [u[2] for u in card.updates] == ["您好，订单", "您好，订单已发", "您好，订单已发货。"]
    assert [u[3] for u in card.updates] == [False, False, True]
    assert all(u[1] == "content" for u in card.updates)
    assert len({u[0] for u in card.updates}) == len(card.updates)  # a new guid every time
    assert (card.text(), card.flow_status) == ("您好，订单已发货。", cards.FLOW_FINISHED)
    assert state.sent == []  # no markdown reply besides the card
    # A resend of the same part (the send marker was lost) changes nothing.
    assert await adapter.send(reply("您好，订单已发货。", group=True), http) == sent
    assert len(card.updates) == 3
    stored = await cards.CardStore(aredis, "default").get("msgA==")
    assert stored is not None
    assert (stored.status, stored.final) == (cards.DONE, "您好，订单已发货。")
    assert 0 < await aredis.ttl(keys.dingtalk_card("default", "msgA==")) <= keys.DINGTALK_CARD_TTL_S
    assert not await aredis.zcard(keys.DINGTALK_OPEN_CARDS)


async def test_a_one_to_one_card_goes_to_the_robot_chat(
    fake: tuple[DingTalkFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)
    await _stream(adapter, clock, reply(), "好的")
    await adapter.send(reply("好的，已为您登记。"), http)
    card = state.card()
    assert (card.space, card.at_users) == (f"dtv1.card//IM_ROBOT.{STAFF}", {})
    assert card.text() == "好的，已为您登记。"


async def test_a_redelivered_turn_finishes_the_same_card(
    fake: tuple[DingTalkFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    first = make_adapter(state, url, aredis, http, clock)
    await _stream(first, clock, reply(), "您好，", "订单", "已发")
    # The worker dies here. Another one takes the turn with a new adapter and a new sink.
    second = make_adapter(state, url, aredis, http, clock)
    await _stream(second, clock, reply(), "您好，", "订单已发货。")
    await second.send(reply("您好，订单已发货。"), http)
    card = state.card()
    texts = [u[2] for u in card.updates]
    # The new attempt started the card over from its own words, then finished it.
    assert texts[-3:] == ["您好，", "您好，订单已发货。", "您好，订单已发货。"]
    assert card.finalized
    assert card.flow_status == cards.FLOW_FINISHED
    assert state.sent == []


async def test_updates_are_throttled_and_throttling_is_carried_by_the_next(
    fake: tuple[DingTalkFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)  # 2 per second
    sink = adapter.delta_sink(reply())
    await sink("一")  # creates the card
    for piece in "二三四":  # within 0.3 s: throttled away
        clock.now += 0.1
        await sink(piece)
    assert state.card().updates == []
    clock.now += 1
    state.fail_next(status=429, body={"code": "Throttling", "message": "too many"})
    await sink("五")  # 429: skipped, not fatal
    clock.now += 1
    state.throttle_next()  # DingTalk's 403 QpsLimit: the same
    await sink("六")
    clock.now += 1
    await sink("七")
    assert [u[2] for u in state.card().updates] == ["一二三四五六七"]
    await adapter.send(reply("一二三四五六七八"), http)
    assert state.card().text() == "一二三四五六七八"
    assert not await cards.CardStore(aredis, "default").cards_off()


async def test_words_held_back_by_the_throttle_show_when_the_model_pauses(
    fake: tuple[DingTalkFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)  # 2 per second
    sink = adapter.delta_sink(reply())
    await sink("正在查询")  # creates the card
    clock.now += 0.1
    await sink("订单…")  # held back; then the model waits on a tool call
    card = state.card()
    assert not card.updates
    clock.now += 0.5
    await asyncio.sleep(0.6)  # the held-back update goes out when the throttle allows
    assert [u[2] for u in card.updates] == ["正在查询订单…"]
    clock.now += 0.1
    await sink("已发货")  # held back again, and the answer ends before it is due
    await adapter.send(reply("正在查询订单…已发货"), http)
    await asyncio.sleep(0.6)  # the cancelled held-back update never lands after the end
    assert [(u[2], u[3]) for u in card.updates] == [
        ("正在查询订单…", False),
        ("正在查询订单…已发货", True),
    ]


async def test_a_restart_clears_the_card_at_once(
    fake: tuple[DingTalkFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)
    sink = adapter.delta_sink(reply())
    await sink("半个回答")
    await sink(STREAM_RESTART)  # the fallback model starts over: not throttled
    assert [u[2] for u in state.card().updates] == [""]
    await sink("备用")
    await adapter.send(reply("备用模型的回答"), http)
    assert state.card().text() == "备用模型的回答"


@pytest.mark.parametrize("refusal", ["permission", "template"])
async def test_a_refused_card_turns_cards_off_for_the_app_with_one_log_line(
    fake: tuple[DingTalkFakeState, str],
    aredis: aioredis.Redis,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    refusal: str,
) -> None:
    state, url = fake
    if refusal == "permission":
        state.card_permission = False
    else:
        state.templates = set()  # the template was deleted, or the id mistyped
    caplog.set_level(logging.WARNING, logger="adapters.dingtalk.streaming")
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)
    for msg_id in ("msg1==", "msg2=="):
        await _stream(adapter, clock, reply(msg_id=msg_id), "您好", "，在的")
        await adapter.send(reply("您好，在的。", msg_id), http)
    assert [m["text"] for m in state.sent] == ["您好，在的。", "您好，在的。"]  # markdown
    assert state.cards == {}
    assert len(state.matching("/v1.0/card/instances/createAndDeliver")) == 1  # asked once
    assert await cards.CardStore(aredis, "default").cards_off()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "Card.Instance.Write" in lines[0]


async def test_a_card_not_delivered_answers_this_message_in_markdown_only(
    fake: tuple[DingTalkFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    state.deliver_error = "robot not in group"
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)
    await _stream(adapter, clock, reply(group=True), "您好", "，在的")
    await adapter.send(reply("您好，在的。", group=True), http)
    assert [(m["via"], m["text"]) for m in state.sent] == [("group", "您好，在的。")]
    assert len(state.matching("/v1.0/card/streaming")) == 0
    # About this chat, not the app: the next message still gets a card.
    assert not await cards.CardStore(aredis, "default").cards_off()
    state.deliver_error = ""
    await _stream(adapter, clock, reply(msg_id="msgB==", group=True), "好的")
    await adapter.send(reply("好的。", "msgB==", group=True), http)
    assert state.card().text() == "好的。"


async def test_a_card_of_unknown_fate_ends_in_one_answer(
    fake: tuple[DingTalkFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)
    await adapter.access_token(http)
    state.fail_next(status=500)  # createAndDeliver fails: did the card come to exist?
    await _stream(adapter, clock, reply(), "您好", "，在的")
    stored = await cards.CardStore(aredis, "default").get("msgA==")
    assert stored is not None
    assert stored.status == cards.PENDING
    assert len(state.matching("/v1.0/card/instances/createAndDeliver")) == 1
    # It did not: the final text has no card to go to, so it goes out as markdown, once.
    await adapter.send(reply("您好，在的。"), http)
    assert [m["text"] for m in state.sent] == ["您好，在的。"]
    assert state.cards == {}
    await adapter.send(reply("您好，在的。"), http)
    assert len(state.sent) == 1


async def test_a_card_created_but_its_answer_lost_is_finished_once(
    fake: tuple[DingTalkFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)
    await adapter.access_token(http)
    state.fail_next(status=502, after=True)  # delivered, but the answer was lost
    await _stream(adapter, clock, reply(group=True), "您好", "，在的")
    await adapter.send(reply("您好，在的。", group=True), http)
    card = state.card()  # the card that came to exist is the one that ends
    assert (card.finalized, card.text(), card.flow_status) == (
        True,
        "您好，在的。",
        cards.FLOW_FINISHED,
    )
    assert state.sent == []


async def test_a_turn_that_ends_without_an_answer_ends_the_card_as_it_stands(
    fake: tuple[DingTalkFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)
    await _stream(adapter, clock, reply(), "正在转人工")
    await adapter.finish(reply())
    card = state.card()
    assert (card.finalized, card.text(), card.flow_status) == (
        True,
        "正在转人工",
        cards.FLOW_FINISHED,
    )


async def test_the_sweeper_ends_a_dead_turns_card_once_and_a_late_turn_adds_nothing(
    fake: tuple[DingTalkFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)
    await _stream(adapter, clock, reply(), "退货请在订单页", "申请售后")
    apps = {"default": adapter}
    # Not idle long enough yet: left alone.
    assert await sweep.sweep(aredis, http, apps, now=time.time()) == 0
    later = time.time() + sweep.GRACE_S + 1
    assert await sweep.sweep(aredis, http, apps, now=later) == 1
    card = state.card()
    assert card.finalized
    assert card.text() == f"退货请在订单页申请售后\n\n{sweep.CUT_NOTE}"
    assert card.flow_status == cards.FLOW_FAILED
    assert await sweep.sweep(aredis, http, apps, now=later) == 0
    # The turn comes back late with its answer: the card has its ending already.
    updates = len(card.updates)
    await adapter.send(reply("退货请在订单页申请售后，寄回即可。"), http)
    assert (len(card.updates), state.sent) == (updates, [])


async def test_an_update_whose_answer_never_came_back_is_swept_with_its_text(
    fake: tuple[DingTalkFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)
    await adapter.access_token(http)
    sink = adapter.delta_sink(reply())
    await sink("退货请在订单页")
    member = f"default:{reply().in_reply_to}"
    alive_at = await aredis.zscore(keys.DINGTALK_OPEN_CARDS, member)
    # The card shows the next piece, but its answer is lost (as for a worker killed right
    # after the update): the text is noted all the same, and it is no sign of life.
    state.fail_next(status=500, after=True)
    clock.now += 1
    await sink("申请售后")
    card = state.card()
    assert card.text() == "退货请在订单页申请售后"
    assert await aredis.zscore(keys.DINGTALK_OPEN_CARDS, member) == alive_at
    later = time.time() + sweep.GRACE_S + 1
    assert await sweep.sweep(aredis, http, {"default": adapter}, now=later) == 1
    assert card.text() == f"退货请在订单页申请售后\n\n{sweep.CUT_NOTE}"


async def test_the_sweeper_ends_an_empty_card_with_an_error(
    fake: tuple[DingTalkFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)
    sink = adapter.delta_sink(reply())
    await sink("嗯")
    await sink(STREAM_RESTART)
    later = time.time() + sweep.GRACE_S + 1
    assert await sweep.sweep(aredis, http, {"default": adapter}, now=later) == 1
    final = state.card().updates[-1]
    assert (final[2], final[3], final[4]) == (sweep.NOTHING_NOTE, True, False)


def test_an_app_without_a_template_answers_in_markdown(
    make_settings: Any, aredis: aioredis.Redis
) -> None:
    def build(**extra: Any) -> Any:
        section = DingTalkSettings(app_key="k", app_secret="s", **extra)
        return wiring.adapter_for(
            section, app="default", settings=make_settings(), tokens=None, redis=aredis
        )

    assert type(build()) is DingTalkAdapter
    assert type(build(card_template_id=TEMPLATE_ID)) is DingTalkCardAdapter


async def test_the_workers_run_the_sweeper_for_apps_with_cards(
    fake: tuple[DingTalkFakeState, str],
    aredis: aioredis.Redis,
    http: aiohttp.ClientSession,
    make_settings: Any,
) -> None:
    state, url = fake
    plain = {"app_key": state.app_key, "app_secret": state.app_secret, "api_base": url}
    assert wiring.sweepers(make_settings(dingtalk=plain)) == []  # markdown only: no sweeper
    settings = make_settings(dingtalk={**plain, "card_template_id": TEMPLATE_ID})
    sweepers = wiring.sweepers(settings)
    assert len(sweepers) == 1
    clock = Clock()
    await _stream(make_adapter(state, url, aredis, http, clock), clock, reply(), "您好，", "在的")
    # The worker died long ago and no turn came back.
    member = "default:msgA=="
    await aredis.zadd(keys.DINGTALK_OPEN_CARDS, {member: time.time() - sweep.GRACE_S - 5})
    assert await runtime.sweep_once(aredis, http, sweepers) == 1
    card = state.card()
    assert (card.finalized, card.flow_status) == (True, cards.FLOW_FAILED)
    assert card.text().startswith("您好，在的")
