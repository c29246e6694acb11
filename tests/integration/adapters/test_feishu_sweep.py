"""The sweeper ends Feishu streaming cards whose turn died, once, with the text so far and a
note, and closes streaming mode: real Redis, the fake Feishu API with CardKit."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
import redis.asyncio as aioredis

from adapters.feishu import cards
from adapters.feishu import sweep as feishu_sweep
from adapters.feishu.streaming import FeishuStreamingAdapter
from bot import keys
from tests.fakes.feishu_api import FakeCard, FeishuFakeState
from tests.integration.adapters.test_feishu_cards import Clock, fake, http, make_adapter, reply

__all__ = ["fake", "http"]  # the fixtures this module takes from the cards tests

GRACE = 0.3  # the tests' idea of "no write for long"


async def _started(
    state: FeishuFakeState,
    url: str,
    redis: aioredis.Redis,
    session: aiohttp.ClientSession,
    message_id: str,
    *pieces: str,
) -> FakeCard:
    """A turn that streamed `pieces` into its card, then died."""
    clock = Clock()
    adapter = make_adapter(state, url, redis, session, clock)
    sink = adapter.delta_sink(reply(message_id=message_id))
    for piece in pieces:
        await sink(piece)
        clock.now += 1  # each piece an update
    shown = next(m for m in state.card_messages() if m["reply_to"] == message_id)
    return state.cards[shown["card_id"]]


def _sweeper(
    state: FeishuFakeState, url: str, redis: aioredis.Redis, session: aiohttp.ClientSession
) -> dict[str, FeishuStreamingAdapter]:
    return {"default": make_adapter(state, url, redis, session, Clock())}


async def test_a_dead_turns_card_is_ended_once_with_the_text_so_far(
    fake: tuple[FeishuFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    dead = await _started(state, url, aredis, http, "om_dead", "退货请在", "签收后")
    await asyncio.sleep(GRACE + 0.1)
    alive = await _started(state, url, aredis, http, "om_alive", "还在写")  # written just now
    apps = _sweeper(state, url, aredis, http)

    assert await feishu_sweep.sweep(aredis, http, apps, now=time.time(), grace_s=GRACE) == 1
    assert dead.text() == f"退货请在签收后\n\n{feishu_sweep.CUT_NOTE}"
    assert not dead.streaming  # off the chat list's "生成中"
    assert dead.closed_at_sequence > dead.updates[-1][0]
    assert alive.streaming
    assert alive.text() == "还在写"
    stored = await cards.CardStore(aredis, "default").get("om_dead")
    assert stored is not None
    assert stored.swept
    assert stored.final == dead.text()
    open_cards = await aredis.zrange(keys.FEISHU_OPEN_CARDS, 0, -1)
    assert [m.decode() for m in open_cards] == ["default:om_alive"]

    # Another round, or another worker's sweeper: nothing twice.
    assert await feishu_sweep.sweep(aredis, http, apps, now=time.time(), grace_s=GRACE) == 0
    assert len(state.matching(f"/cards/{dead.card_id}/settings")) == 1
    assert len(state.sent) == 2  # the two cards; no plain message


async def test_sweepers_of_several_workers_end_a_card_once(
    fake: tuple[FeishuFakeState, str], redis_url: str, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clients = [aioredis.from_url(redis_url) for _ in range(5)]  # one connection per "worker"
    try:
        card = await _started(state, url, clients[0], http, "om_race", "一半")
        await asyncio.sleep(GRACE + 0.1)
        ended = await asyncio.gather(
            *(
                feishu_sweep.sweep(
                    r, http, _sweeper(state, url, r, http), now=time.time(), grace_s=GRACE
                )
                for r in clients
            )
        )
    finally:
        for r in clients:
            await r.aclose()
    assert sorted(ended) == [0, 0, 0, 0, 1]
    assert card.text() == f"一半\n\n{feishu_sweep.CUT_NOTE}"
    assert len(state.matching(f"/cards/{card.card_id}/settings")) == 1
    assert len([u for u in card.updates if u[2].endswith(feishu_sweep.CUT_NOTE)]) == 1


async def test_a_late_turn_after_the_sweep_adds_no_second_answer(
    fake: tuple[FeishuFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    card = await _started(state, url, aredis, http, "om_late", "半个")
    await asyncio.sleep(GRACE + 0.1)
    apps = _sweeper(state, url, aredis, http)
    assert await feishu_sweep.sweep(aredis, http, apps, now=time.time(), grace_s=GRACE) == 1
    ended = card.text()
    requests = len(state.requests)

    late = make_adapter(state, url, aredis, http, Clock())  # the turn, redelivered at last
    sink = late.delta_sink(reply(message_id="om_late"))
    for piece in ("完整", "的回答"):
        await sink(piece)
    sent = await late.send(reply("完整的回答", message_id="om_late"), http)
    await late.finish(reply("完整的回答", message_id="om_late"))
    assert sent == state.sent[0]["message_id"]  # the card's message: answered already
    assert len(state.sent) == 1
    assert card.text() == ended
    assert len(state.requests) == requests  # not one call to Feishu


async def test_a_card_past_its_window_is_closed_and_the_note_replies_to_it(
    fake: tuple[FeishuFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    card = await _started(state, url, aredis, http, "om_old", "很久以前的")
    card.streaming = False  # Feishu ended streaming mode itself (10 minutes)
    await asyncio.sleep(GRACE + 0.1)
    apps = _sweeper(state, url, aredis, http)
    assert await feishu_sweep.sweep(aredis, http, apps, now=time.time(), grace_s=GRACE) == 1
    assert card.text() == "很久以前的"
    notes = [m for m in state.sent if not m.get("card_id")]
    assert [(n["reply_to"], n["text"]) for n in notes] == [
        (state.sent[0]["message_id"], feishu_sweep.CUT_NOTE)
    ]
    assert await feishu_sweep.sweep(aredis, http, apps, now=time.time(), grace_s=GRACE) == 0
    assert len(state.sent) == 2


async def test_an_update_whose_answer_never_came_back_is_swept_with_its_text(
    fake: tuple[FeishuFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)
    sink = adapter.delta_sink(reply(message_id="om_lost"))
    await sink("退货请在")
    member = "default:om_lost"
    alive_at = await aredis.zscore(keys.FEISHU_OPEN_CARDS, member)
    # The card shows the next piece, but its answer is lost (as for a worker killed between
    # the update and anything after it): the text is noted all the same, and the update
    # that did not come back is no sign of life.
    state.fail_next(status=500, after=True)
    clock.now += 1
    await sink("签收后")
    card = next(iter(state.cards.values()))
    assert card.text() == "退货请在签收后"
    assert await aredis.zscore(keys.FEISHU_OPEN_CARDS, member) == alive_at
    await asyncio.sleep(GRACE + 0.1)
    apps = _sweeper(state, url, aredis, http)
    assert await feishu_sweep.sweep(aredis, http, apps, now=time.time(), grace_s=GRACE) == 1
    assert card.text() == f"退货请在签收后\n\n{feishu_sweep.CUT_NOTE}"


async def test_an_update_that_fails_is_no_sign_of_life(
    fake: tuple[FeishuFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    clock = Clock()
    adapter = make_adapter(state, url, aredis, http, clock)
    sink = adapter.delta_sink(reply(message_id="om_outage"))
    await sink("说到一半")
    await asyncio.sleep(GRACE + 0.1)
    state.fail_from_now(503)  # Feishu down: the turn's updates fail
    clock.now += 1
    await sink("，接着说")
    apps = _sweeper(state, url, aredis, http)
    state.recover()
    # The failed update did not count as a write: the card is idle, and swept.
    assert await feishu_sweep.sweep(aredis, http, apps, now=time.time(), grace_s=GRACE) == 1


async def test_feishu_down_leaves_the_card_to_the_next_round(
    fake: tuple[FeishuFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    card = await _started(state, url, aredis, http, "om_down", "说到一半")
    await asyncio.sleep(GRACE + 0.1)
    apps = _sweeper(state, url, aredis, http)
    state.fail_from_now(503)
    assert await feishu_sweep.sweep(aredis, http, apps, now=time.time(), grace_s=GRACE) == 0
    assert card.streaming
    state.recover()
    assert await feishu_sweep.sweep(aredis, http, apps, now=time.time(), grace_s=GRACE) == 1
    assert card.text() == f"说到一半\n\n{feishu_sweep.CUT_NOTE}"
    assert not card.streaming


async def test_a_card_whose_state_expired_leaves_the_open_set(
    fake: tuple[FeishuFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    await _started(state, url, aredis, http, "om_gone", "过期")
    await aredis.delete(keys.feishu_card("default", "om_gone"))
    await asyncio.sleep(GRACE + 0.1)
    apps = _sweeper(state, url, aredis, http)
    assert await feishu_sweep.sweep(aredis, http, apps, now=time.time(), grace_s=GRACE) == 0
    assert await aredis.zcard(keys.FEISHU_OPEN_CARDS) == 0
    assert not await aredis.exists(keys.feishu_card("default", "om_gone"))


@pytest.mark.parametrize("text", ["", "   "])
def test_nothing_written_gets_the_apology(text: str) -> None:
    assert feishu_sweep.closing_text(text) == feishu_sweep.NOTHING_NOTE


async def test_a_card_with_no_message_on_record_is_closed_too(
    fake: tuple[FeishuFakeState, str], aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    # The worker died after creating the card: maybe before sending it, maybe after
    # sending it but before noting the message id. Either way the card entity is closed.
    state.cards["7100000000000000009"] = FakeCard("7100000000000000009", {cards.ELEMENT_ID: "半句"})
    store = cards.CardStore(aredis, "default")
    await store.created("om_unsent", "7100000000000000009", "半句")
    await asyncio.sleep(GRACE + 0.1)
    apps = _sweeper(state, url, aredis, http)
    assert await feishu_sweep.sweep(aredis, http, apps, now=time.time(), grace_s=GRACE) == 1
    card = state.cards["7100000000000000009"]
    assert card.text() == f"半句\n\n{feishu_sweep.CUT_NOTE}"
    assert not card.streaming
    assert state.sent == []  # nothing sent in its place
    stored = await store.get("om_unsent")
    assert stored is not None
    assert stored.swept
