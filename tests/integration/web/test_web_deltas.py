"""The web channel's streamed deltas: gathered to at most DELTAS_PER_S stream entries a
second, in order, adding up to what the model wrote, and never after the final message."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any, cast

import redis.asyncio as aioredis

from adapters.web import DELTAS_PER_S, WebEvent, WebSender, read_events
from bot import keys
from bot.domain import STREAM_RESTART, InboundMessage, Platform, Reply
from tests.integration.private_redis import PrivateRedis

NO_HTTP = cast(Any, None)  # the web channel sends through Redis alone


def reply_to(event_id: str) -> Reply:
    msg = InboundMessage(Platform.WEB, "default", event_id, "conv-1", "user-1", "你好")
    return Reply.to(msg, "")


async def events_of(redis: aioredis.Redis, event_id: str) -> list[WebEvent]:
    return [event async for event in read_events(redis, event_id, block_ms=100)]


async def _so_far(redis: aioredis.Redis, event_id: str) -> list[WebEvent]:
    """The events written so far, without waiting for the end mark."""
    entries: Any = await redis.xrange(keys.webchat_stream(event_id))
    return [WebEvent(f[b"kind"].decode(), f[b"text"].decode()) for _id, f in entries]


def deltas(events: list[WebEvent]) -> list[str]:
    return [e.text for e in events if e.kind == "delta"]


async def test_a_fast_stream_is_gathered_and_adds_up_to_the_answer(aredis) -> None:
    sender = WebSender(aredis)
    reply = reply_to("fast")
    sink = sender.delta_sink(reply)
    pieces = [f"字{i}" for i in range(300)]  # one per token, as vLLM streams
    started = time.monotonic()
    for piece in pieces:
        await sink(piece)
    elapsed = time.monotonic() - started
    answer = "".join(pieces)
    await sender.send(reply.with_text(answer), NO_HTTP)
    await sender.finish(reply)

    events = await events_of(aredis, "fast")
    kinds = [e.kind for e in events]
    written = deltas(events)
    # The first at once, then at most DELTAS_PER_S a second, and what was held at the end.
    assert 1 <= len(written) <= 2 + elapsed * DELTAS_PER_S, (len(written), elapsed)
    assert len(written) < len(pieces) / 10
    assert "".join(written) == answer
    assert kinds == ["delta"] * len(written) + ["message", "done"]


async def test_a_trickling_stream_keeps_the_rate(aredis) -> None:
    sender = WebSender(aredis)
    reply = reply_to("trickle")
    sink = sender.delta_sink(reply)
    started = time.monotonic()
    for i in range(40):  # 40 pieces over about 1.2 s
        await sink(f"{i},")
        await asyncio.sleep(0.03)
    elapsed = time.monotonic() - started
    await sender.send(reply.with_text("".join(f"{i}," for i in range(40))), NO_HTTP)
    await sender.finish(reply)

    written = deltas(await events_of(aredis, "trickle"))
    assert "".join(written) == "".join(f"{i}," for i in range(40))
    # About one entry a tenth of a second, not one per piece.
    assert elapsed * DELTAS_PER_S / 2 <= len(written) <= 2 + elapsed * DELTAS_PER_S, (
        len(written),
        elapsed,
    )


async def test_a_piece_due_before_the_held_write_wakes_keeps_the_held_words(aredis) -> None:
    # The held write sleeps on the loop; a piece may find the throttle due before that
    # sleep ends. That piece's write carries the held words with it (CI once lost four).
    now = [0.0]
    sender = WebSender(aredis, clock=lambda: now[0])
    reply = reply_to("due-first")
    sink = sender.delta_sink(reply)
    await sink("一")  # due: written at once
    now[0] = 0.05
    await sink("二")  # held; its write sleeps 0.05 s of real time
    now[0] = 0.5
    await sink("三")  # due by the clock before the held write woke
    await asyncio.sleep(2 / DELTAS_PER_S)
    assert deltas(await _so_far(aredis, "due-first")) == ["一", "二三"]


async def test_held_words_show_when_the_model_pauses(aredis) -> None:
    sender = WebSender(aredis)
    reply = reply_to("pause")
    sink = sender.delta_sink(reply)
    await sink("正在为您")  # the first piece goes out at once
    await sink("查询订单")  # held back by the throttle
    assert deltas(await _so_far(aredis, "pause")) == ["正在为您"]
    # The model now runs a tool call and sends nothing: the held words still come.
    await asyncio.sleep(2 / DELTAS_PER_S)
    assert deltas(await _so_far(aredis, "pause")) == ["正在为您", "查询订单"]


async def test_a_restart_voids_held_words(aredis) -> None:
    sender = WebSender(aredis)
    reply = reply_to("restart")
    sink = sender.delta_sink(reply)
    await sink("半句")
    await sink("没写完")  # held back, then void
    await sink(STREAM_RESTART)
    await sink("备用模型的回答")
    await asyncio.sleep(2 / DELTAS_PER_S)  # a held write would have happened by now
    await sender.send(reply.with_text("备用模型的回答"), NO_HTTP)
    await sender.finish(reply)

    events = await events_of(aredis, "restart")
    kinds = [e.kind for e in events]
    assert kinds.index("reset") == 1, kinds
    assert deltas(events[:1]) == ["半句"]
    assert "".join(deltas(events[1:])) == "备用模型的回答"
    assert all("没写完" not in e.text for e in events)


async def test_a_held_write_under_way_lands_before_the_message(private_redis: PrivateRedis) -> None:
    redis = aioredis.Redis.from_url(private_redis.url)
    try:
        sender = WebSender(redis)
        reply = reply_to("under-way")
        sink = sender.delta_sink(reply)
        await sink("第一段")
        await sink("第二段")  # held: written a tenth of a second later
        private_redis.signal(signal.SIGSTOP)  # Redis stalls: the held write hangs on it
        try:
            await asyncio.sleep(2 / DELTAS_PER_S)
            sending = asyncio.create_task(sender.send(reply.with_text("第一段第二段"), NO_HTTP))
            await asyncio.sleep(0.2)
            assert not sending.done()
        finally:
            private_redis.signal(signal.SIGCONT)
        await sending
        await sender.finish(reply)
        kinds = [e.kind for e in await events_of(redis, "under-way")]
        assert kinds == ["delta", "delta", "message", "done"]
    finally:
        await redis.aclose()


async def test_held_words_go_with_the_message_in_one_round_trip(
    private_redis: PrivateRedis,
) -> None:
    redis = aioredis.Redis.from_url(private_redis.url)
    try:
        sender = WebSender(redis)
        reply = reply_to("together")
        sink = sender.delta_sink(reply)
        await sink("七天")  # written at once: one round trip
        await sink("无理由退货")  # held, then written with the message
        await sender.send(reply.with_text("七天无理由退货"), NO_HTTP)
        await sender.finish(reply)

        kinds = [e.kind for e in await events_of(redis, "together")]
        assert kinds == ["delta", "delta", "message", "done"]
        stats: Any = await redis.info("commandstats")
        # Each round trip of the sender sets the stream's expiry once.
        assert (stats["cmdstat_xadd"]["calls"], stats["cmdstat_expire"]["calls"]) == (4, 3)
    finally:
        await redis.aclose()
