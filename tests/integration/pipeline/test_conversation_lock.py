"""The conversation lock of a turn: kept alive while the turn runs, always let go after.

Found under overload (benchmarks.worker_inflight, 600 turns on one worker): a cancel that
reached the lock's keeper inside a Redis call was absorbed, the keeper went on renewing
the lock forever, and its turn (and every later turn of that conversation) waited forever.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.lock import Lock

from bot import keys
from bot.domain import InboundMessage, Platform
from bot.pipeline import turn


class CancelAbsorbingLock(Lock):
    """A real Redis lock whose renewal swallows one cancellation, as a saturated client did."""

    absorbed = 0

    async def reacquire(self) -> Any:
        try:
            await asyncio.sleep(0.2)  # a slow round trip while the turn ends
        except asyncio.CancelledError:
            type(self).absorbed += 1
        return await super().reacquire()


def _message() -> InboundMessage:
    return InboundMessage(Platform.WEB, "default", "e-lock", "c-lock", "u1", "你好")


async def test_the_lock_is_released_even_when_its_keeper_absorbs_the_cancel(
    aredis: aioredis.Redis, monkeypatch: Any
) -> None:
    monkeypatch.setattr(turn, "Lock", CancelAbsorbingLock)
    msg = _message()
    started = time.monotonic()
    async with turn._conversation_turn(aredis, msg, seq=1, lock_ttl_s=0.9):
        # The keeper renews every ttl/3 = 0.3 s, each renewal taking 0.2 s: at 0.4 s the
        # turn ends while the keeper is inside one (before the fix: a wait with no end).
        await asyncio.sleep(0.4)
    assert time.monotonic() - started < 0.4 + turn.KEEPER_STOP_S
    assert CancelAbsorbingLock.absorbed == 1
    assert await aredis.exists(keys.conversation_lock(msg.conversation_key)) == 0


async def test_the_lock_is_renewed_while_a_long_turn_runs(aredis: aioredis.Redis) -> None:
    msg = _message()
    lock_key = keys.conversation_lock(msg.conversation_key)
    async with turn._conversation_turn(aredis, msg, seq=1, lock_ttl_s=0.3):
        await asyncio.sleep(0.9)  # three times the TTL
        assert await aredis.exists(lock_key) == 1
    assert await aredis.exists(lock_key) == 0
    assert int(await aredis.get(keys.served(msg.conversation_key)) or 0) == 1
