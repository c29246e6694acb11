"""A Redis lease: at most one holder of a named role across replicas (e.g. a Stream connection).

``SET key owner NX PX ttl`` takes it; the holder renews it well before it lapses with a
compare-and-renew script, so a holder that stalls or dies loses it after at most ``ttl_s`` and
a waiting replica takes over on its next poll. Release deletes it only if still ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis

log = logging.getLogger(__name__)

# Renew/release only while the key still names us: a lapsed lease taken by another replica
# must not be extended or deleted by the old holder.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """One replica's claim on `key`; `owner` is random per instance."""

    def __init__(
        self,
        redis: aioredis.Redis,
        key: str,
        *,
        ttl_s: float = 10.0,
        renew_every_s: float | None = None,
        poll_s: float | None = None,
        owner: str | None = None,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.redis = redis
        self.key = key
        self.ttl_s = ttl_s
        # Three renewals per TTL: two may fail (a slow Redis round trip) before it lapses.
        self.renew_every_s = renew_every_s if renew_every_s is not None else ttl_s / 3
        self.poll_s = poll_s if poll_s is not None else ttl_s / 3
        self.owner = owner or secrets.token_hex(8)

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl_s * 1000))

    async def try_acquire(self) -> bool:
        """Take the lease if free (or already ours); True when we hold it now."""
        if await self.redis.set(self.key, self.owner, nx=True, px=self._ttl_ms):
            return True
        return await self.renew()

    async def renew(self) -> bool:
        """Extend the lease if we still hold it; False when it lapsed or another holds it."""
        result = await self.redis.eval(_RENEW, 1, self.key, self.owner, self._ttl_ms)  # type: ignore[misc]  # redis-py types eval as Awaitable | value
        return bool(result)

    async def release(self) -> bool:
        """Give the lease up if we still hold it."""
        result = await self.redis.eval(_RELEASE, 1, self.key, self.owner)  # type: ignore[misc]  # see renew
        return bool(result)

    async def holder(self) -> str | None:
        value = await self.redis.get(self.key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def wait_acquire(self, stop: asyncio.Event | None = None) -> bool:
        """Poll until we hold the lease (True) or `stop` is set (False)."""
        while stop is None or not stop.is_set():
            try:
                if await self.try_acquire():
                    return True
            except aioredis.RedisError as exc:
                log.warning("lease %s: redis error while acquiring (%s)", self.key, exc)
            if stop is None:
                await asyncio.sleep(self.poll_s)
            else:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_s):
                        await stop.wait()
        return False

    async def keep(self) -> None:
        """Renew until the lease is lost; returns when it is (the caller then stops its work)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ttl_s
        while True:
            await asyncio.sleep(self.renew_every_s)
            try:
                if not await self.renew():
                    log.warning("lease %s lost to another holder", self.key)
                    return
                deadline = loop.time() + self.ttl_s
            except aioredis.RedisError as exc:
                # Unknown whether it still stands: keep trying until it would have lapsed.
                log.warning("lease %s: renew failed (%s)", self.key, exc)
                if loop.time() >= deadline:
                    return


async def run_while_holding(
    lease: Lease,
    work: Callable[[], Coroutine[Any, Any, None]],
    stop: asyncio.Event,
    *,
    on_change: Callable[[bool], None] | None = None,
) -> None:
    """Acquire `lease`, run `work` while holding it, and start over when it is lost.

    `work` is cancelled the moment the lease is lost; the loop ends when `stop` is set, and
    the lease is released on the way out.
    """
    while not stop.is_set():
        if not await lease.wait_acquire(stop):
            return
        log.info("lease %s taken by %s", lease.key, lease.owner)
        if on_change is not None:
            on_change(True)
        tasks = {
            asyncio.create_task(work(), name="lease-work"),
            asyncio.create_task(lease.keep(), name="lease-keep"),
            asyncio.create_task(stop.wait(), name="lease-stop"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if on_change is not None:
                on_change(False)
            with contextlib.suppress(aioredis.RedisError):
                await lease.release()
        for task in done:
            if task.get_name() == "lease-work" and not task.cancelled() and task.exception():
                log.error("lease %s: work failed", lease.key, exc_info=task.exception())
                # Let another replica try before this one takes the lease again.
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(lease.poll_s):
                        await stop.wait()
