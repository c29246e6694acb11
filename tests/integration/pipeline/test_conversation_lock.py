"""The conversation lock of a turn: kept alive while the turn runs, always let go after.

Found under overload (benchmarks.worker_inflight, 600 turns on one worker): a cancel that
reached a turn's own lock keeper inside a Redis call was absorbed, the keeper went on
renewing the lock forever, and its turn (and every later turn of that conversation) waited
forever. The process now has one keeper for all its locks (bot/pipeline/lock_keeper.py),
which a turn leaves with a dictionary write: nothing to cancel.
"""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as aioredis

from bot import keys
from bot.domain import InboundMessage, Platform
from bot.pipeline import lock_keeper, turn


def _message() -> InboundMessage:
    return InboundMessage(Platform.WEB, "default", "e-lock", "c-lock", "u1", "你好")


async def test_one_keeper_renews_every_lock_held_and_stops_when_none_is(
    aredis: aioredis.Redis,
) -> None:
    messages = [
        InboundMessage(Platform.WEB, "default", f"e-{i}", f"c-{i}", "u1", "你好") for i in range(3)
    ]
    async with contextlib.AsyncExitStack() as turns:
        for msg in messages:
            await turns.enter_async_context(turn._conversation_turn(aredis, msg, 1, 0.3))
        keeper = lock_keeper.keeper(aredis, 0.3)
        await asyncio.sleep(0.9)  # three times the TTL
        for msg in messages:
            assert await aredis.exists(keys.conversation_lock(msg.conversation_key)) == 1
    for msg in messages:
        assert await aredis.exists(keys.conversation_lock(msg.conversation_key)) == 0
    await asyncio.sleep(0.2)  # its tick after the last drop: nothing held, so it ends
    assert keeper._task is None


async def test_a_lock_taken_over_by_another_holder_is_not_renewed(
    aredis: aioredis.Redis,
) -> None:
    keeper = lock_keeper.keeper(aredis, 0.3)
    await aredis.set("lock:a", b"ours", px=300)
    await aredis.set("lock:b", b"ours", px=300)
    keeper.hold("lock:a", b"ours")
    keeper.hold("lock:b", b"ours")
    await aredis.set("lock:b", b"theirs", px=150)  # expired and taken meanwhile
    await asyncio.sleep(0.5)
    assert await aredis.get("lock:a") == b"ours"  # renewed
    assert await aredis.get("lock:b") is None  # left to expire, not renewed as ours
    keeper.drop("lock:a")
    await asyncio.sleep(0.2)
    assert keeper._task is None


async def test_the_lock_is_renewed_while_a_long_turn_runs(aredis: aioredis.Redis) -> None:
    msg = _message()
    lock_key = keys.conversation_lock(msg.conversation_key)
    async with turn._conversation_turn(aredis, msg, seq=1, lock_ttl_s=0.3):
        await asyncio.sleep(0.9)  # three times the TTL
        assert await aredis.exists(lock_key) == 1
    assert await aredis.exists(lock_key) == 0
    assert int(await aredis.get(keys.served(msg.conversation_key)) or 0) == 1
