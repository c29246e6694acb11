"""Platform access tokens shared by every process through Redis, refreshed single-flight."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import LockError

from bot.errors import TransientError

log = logging.getLogger(__name__)

# Keep a token at least this long even when the platform grants little more than the margin.
MIN_TTL_S = 5.0

# Compare-and-delete: only the token that failed may go, never a newer one another process set.
_DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

Fetch = Callable[[], Awaitable[tuple[str, float]]]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class TokenCache:
    """Caches access tokens in Redis under caller-chosen keys (``token:{platform}:{app}``).

    A miss refreshes under the Redis lock ``lock:{key}`` and re-reads the cache once the lock is
    held, so concurrent misses across processes cause one fetch: some platforms (MP) revoke the
    previous token on every fetch
    (docs/protocols/pitfalls.md#pitfall-4-several-workers-refreshing-one-token).
    """

    def __init__(
        self, redis: aioredis.Redis, *, margin_s: float = 300, lock_timeout_s: float = 15
    ) -> None:
        self._redis = redis
        self._margin_s = margin_s
        self._lock_timeout_s = lock_timeout_s
        self._delete_if_equal = redis.register_script(_DELETE_IF_EQUAL)

    async def get(self, key: str, fetch: Fetch) -> str:
        """Return the cached token for key, calling fetch() -> (token, expires_in_s) on a miss."""
        cached = await self._redis.get(key)
        if cached is not None:
            return _text(cached)
        lock = self._redis.lock(
            "lock:" + key,
            # Expires by itself if the holder dies; longer than one fetch with its timeout.
            timeout=self._lock_timeout_s,
            blocking_timeout=self._lock_timeout_s,
            sleep=0.05,
            # A new lock per call and many coroutines per thread: keep the owner token local.
            thread_local=False,
        )
        if not await lock.acquire():
            # The holder is slow or dead; use its result if it landed, else retry later.
            cached = await self._redis.get(key)
            if cached is not None:
                return _text(cached)
            raise TransientError(f"timed out waiting for the token lock of {key}")
        try:
            # Another process may have refreshed while this one waited for the lock.
            cached = await self._redis.get(key)
            if cached is not None:
                return _text(cached)
            token, expires_in_s = await fetch()
            ttl_s = self._ttl_s(expires_in_s)
            if ttl_s > 0:
                await self._redis.set(key, token, px=int(ttl_s * 1000))
            log.info("refreshed access token %s (cached %.0f s)", key, ttl_s)
            return token
        finally:
            try:
                await lock.release()
            except LockError:
                # The lock expired during a slow fetch; another holder may own it now.
                log.warning("token lock %s expired before release", key)

    def _ttl_s(self, expires_in_s: float) -> float:
        # Expire early by the margin, but a short-lived grant still caches for a moment
        # (never past its real expiry) so a burst of sends does not refetch each time.
        ttl_s = expires_in_s - self._margin_s
        if ttl_s >= MIN_TTL_S:
            return ttl_s
        return min(MIN_TTL_S, expires_in_s / 2)

    async def invalidate(self, key: str, bad_token: str) -> bool:
        """Delete the cached token only if it is still bad_token; True if it was deleted."""
        deleted = await self._delete_if_equal(keys=[key], args=[bad_token])
        return bool(deleted)
