"""FeishuStreamingAdapter against the fake Feishu API (with CardKit), state in real Redis:
a turn redelivered after a crash finishes the same card, errors mid-stream never cost the
answer, and a card past its streaming window still ends in exactly one answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from adapters.feishu import cards
from adapters.feishu.streaming import FeishuStreamingAdapter
from adapters.tokens import TokenCache
from bot import keys
from bot.domain import STREAM_RESTART, Platform, Reply
from tests.fakes.base import serve
from tests.fakes.feishu_api import FakeCard, FeishuFakeState, make_feishu_app


@pytest.fixture
def fake() -> Iterator[tuple[FeishuFakeState, str]]:
    state = FeishuFakeState()
    with serve(make_feishu_app(state)) as url:
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
    state: FeishuFakeState,
    url: str,
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    clock: Clock,
    **overrides: Any,
) -> FeishuStreamingAdapter:
    config: dict[str, Any] = {
        "app_id": state.app_id,
        "app_secret": state.app_secret,
        "verification_token": "vt",
        "encrypt_key": "",
        "api_base": url,
        "tokens": TokenCache(redis),
        "http_timeout_s": 2,
        "redis": redis,
        "card_updates_per_s": 2,
        "clock": clock,
    }
    adapter = FeishuStreamingAdapter(**{**config, **overrides})
    adapter.use_session(http)
    return adapter


def reply(text: str = "", message_id: str = "om_in_1") -> Reply:
    route = {"message_id": message_id, "chat_id": "oc_chat", "chat_type": "p2p"}
    return Reply(
        platform=Platform.FEISHU,
        app="default",
        conversation_id="oc_chat",
        recipient_id="ou_user",
        text=text,
        in_reply_to=message_id,
        route=route,
    )


async def test_a_redelivered_turn_finishes_the_same_card(
    fake: tuple[FeishuFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    first = make_adapter(state, url, aredis, http, clock)
    sink = first.delta_sink(reply())
    for piece in ("您好，", "订单", "已发"):
        await sink(piece)
        clock.now += 1
    # The worker dies here. Another one takes the turn with a new adapter and a new sink.
    second = make_adapter(state, url, aredis, http, clock)
    sink = second.delta_sink(reply())
    for piece in ("您好，", "订单已发货。"):
        await sink(piece)
        clock.now += 1
    sent = await second.send(reply("您好，订单已发货。"), http)
    assert len(state.cards) == 1
    card = next(iter(state.cards.values()))
    assert [m["card_id"] for m in state.sent] == [card.card_id]  # one message, one card
    assert sent == state.sent[0]["message_id"]
    seqs = [u[0] for u in card.updates]
    assert seqs == sorted(set(seqs))
    assert card.closed_at_sequence > seqs[-1]
    assert card.text() == "您好，订单已发货。"
    assert not card.streaming
    # A resend of the same part (the send marker was lost) changes nothing.
    assert await second.send(reply("您好，订单已发货。"), http) == sent
    assert len(state.sent) == 1
    stored = await cards.CardStore(aredis, "default").get("om_in_1")
    assert stored is not None
    assert (stored.status, stored.final) == (cards.DONE, "您好，订单已发货。")
    assert 0 < await aredis.ttl(keys.feishu_card("default", "om_in_1")) <= keys.FEISHU_CARD_TTL_S


async def test_updates_are_throttled_and_a_429_is_carried_by_the_next(
    fake: tuple[FeishuFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)  # 2 per second
    sink = adapter.delta_sink(reply())
    await sink("一")  # creates the card
    for piece in "二三四五":  # within 0.4 s: throttled away
        clock.now += 0.1
        await sink(piece)
    assert not next(iter(state.cards.values())).updates
    clock.now += 0.6
    state.fail_next(status=429)
    await sink("六")  # rate limited: skipped, the answer goes on
    clock.now += 0.6
    await sink("七")
    card = next(iter(state.cards.values()))
    assert [u[2] for u in card.updates] == ["一二三四五六七"]
    await adapter.send(reply("一二三四五六七八"), http)
    assert card.text() == "一二三四五六七八"
    assert not card.streaming


async def test_a_restart_clears_the_card_at_once(
    fake: tuple[FeishuFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)
    sink = adapter.delta_sink(reply())
    await sink("主模型的半个")
    await sink(STREAM_RESTART)  # not throttled: the half answer must go now
    await sink("备用")
    card = next(iter(state.cards.values()))
    assert [u[2] for u in card.updates] == [""]
    await adapter.send(reply("备用模型的回答"), http)
    assert card.text() == "备用模型的回答"


async def test_a_card_past_its_streaming_window_ends_in_one_plain_answer(
    fake: tuple[FeishuFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)
    sink = adapter.delta_sink(reply())
    await sink("开头")
    card = next(iter(state.cards.values()))
    card.streaming = False  # Feishu closed streaming mode itself (10 minutes)
    await adapter.send(reply("完整回答"), http)
    plain = [m for m in state.sent if not m.get("card_id")]
    assert [m["text"] for m in plain] == ["完整回答"]
    assert len(state.sent) == 2  # the card (its first words) and the one answer


async def test_a_card_created_but_never_shown_is_shown_once_by_the_next_attempt(
    fake: tuple[FeishuFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    # The worker died between creating the card and sending it as the reply.
    state.cards["7100000000000000001"] = FakeCard("7100000000000000001", {cards.ELEMENT_ID: "您好"})
    await cards.CardStore(aredis, "default").created("om_in_1", "7100000000000000001", "您好")
    adapter = make_adapter(state, url, aredis, http, Clock())
    await adapter.delta_sink(reply())("第一句")
    sent = await adapter.send(reply("第一句第二句"), http)
    assert len(state.cards) == 1
    assert [m["card_id"] for m in state.sent] == ["7100000000000000001"]
    assert sent == state.sent[0]["message_id"]
    assert state.cards["7100000000000000001"].text() == "第一句第二句"


async def test_without_the_scope_cards_are_off_for_the_app(
    fake: tuple[FeishuFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    state.cardkit_scope = False
    adapter = make_adapter(state, url, aredis, http, Clock())
    await adapter.delta_sink(reply())("你好")
    assert await aredis.ttl(keys.feishu_cards_off("default")) > 0
    await adapter.send(reply("你好"), http)
    assert [m["msg_type"] for m in state.sent] == ["text"]
    await adapter.delta_sink(reply(message_id="om_in_2"))("再问")
    assert len(state.matching("/open-apis/cardkit/v1/cards")) == 1  # not asked again


async def test_words_held_back_by_the_throttle_show_when_the_model_pauses(
    fake: tuple[FeishuFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)  # 2 per second
    sink = adapter.delta_sink(reply())
    await sink("正在查询")  # creates the card
    clock.now += 0.1
    await sink("订单…")  # held back; then the model waits on a tool call
    card = next(iter(state.cards.values()))
    assert not card.updates
    clock.now += 0.5
    await asyncio.sleep(0.6)  # the held-back update goes out when the throttle allows
    assert [u[2] for u in card.updates] == ["正在查询订单…"]
    clock.now += 0.1
    await sink("已发货")  # held back again, and the answer ends before it is due
    await adapter.send(reply("正在查询订单…已发货"), http)
    await asyncio.sleep(0.6)  # the cancelled held-back update never lands after the end
    assert [u[2] for u in card.updates] == ["正在查询订单…", "正在查询订单…已发货"]
    assert card.text() == "正在查询订单…已发货"
    assert not card.streaming


async def test_a_redelivered_turn_past_the_window_asks_once_then_answers_plainly(
    fake: tuple[FeishuFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    await make_adapter(state, url, aredis, http, clock).delta_sink(reply())("开头")
    card = next(iter(state.cards.values()))
    card.streaming = False  # the dead worker's card outlived its streaming window
    second = make_adapter(state, url, aredis, http, clock)
    sink = second.delta_sink(reply())
    for piece in ("新的", "回答", "内容"):
        await sink(piece)
    assert len(state.matching("/content")) == 1  # refused once, then left to `send`
    await second.send(reply("新的回答内容"), http)
    assert [m["text"] for m in state.sent if not m.get("card_id")] == ["新的回答内容"]
    assert len(state.cards) == 1
