"""Keeps the conversation locks a process holds alive: one renewal round trip per tick for
all of them, instead of a timer task and a script call per turn.

A conversation lock has a short TTL so that a killed worker's lock frees itself quickly;
the turn holding it renews it every TTL/3 while it works. With 1,000 turns in flight each
had its own keeper task (a timer, an event, a cancel at the end) and its own `EVALSHA`
every TTL/3: about 8 % of a loaded worker's CPU (py-spy, issue 13). Here one task per Redis
client and TTL renews every held lock with one script call per `BATCH` locks; a turn only
adds its lock when it takes it and removes it before its release, two dictionary writes, so
there is no cancel for a saturated client to absorb either.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

import redis.asyncio as aioredis

from bot.lua import LuaScript

log = logging.getLogger(__name__)

BATCH = 500  # locks renewed by one script call

# Each lock whose value is still our token gets its TTL back (as redis-py's reacquire);
# the 1-based positions of the others (expired, or taken since) come back.
_RENEW = LuaScript(
    """
local ttl = ARGV[#ARGV]
local lost = {}
for i, key in ipairs(KEYS) do
  if redis.call('get', key) == ARGV[i] then
    redis.call('pexpire', key, ttl)
  else
    lost[#lost + 1] = i
  end
end
return lost
"""
)


class LockKeeper:
    """Renews the locks held through one Redis client with one TTL, every TTL/3."""

    def __init__(self, redis: aioredis.Redis, ttl_s: float) -> None:
        # Weak: the registry below is keyed by the client, which must be able to go away.
        self._redis = weakref.ref(redis)
        self._ttl_s = ttl_s
        self._held: dict[str, bytes] = {}  # lock name -> our token
        self._task: asyncio.Task[None] | None = None

    def hold(self, name: str, token: bytes) -> None:
        """Renew lock `name` (taken with `token`) until `drop`."""
        self._held[name] = token
        task = self._task
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            self._task = asyncio.create_task(self._run())

    def drop(self, name: str) -> None:
        """Stop renewing `name` (before releasing it)."""
        self._held.pop(name, None)

    async def _run(self) -> None:
        # Ends when nothing is held (a hold() starts it again): no task outlives the turns.
        try:
            while self._held:
                await asyncio.sleep(self._ttl_s / 3)
                await self._renew(dict(self._held))
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    async def _renew(self, held: dict[str, bytes]) -> None:
        redis = self._redis()
        if redis is None:
            self._held.clear()
            return
        items = list(held.items())
        ttl_ms = int(self._ttl_s * 1000)
        for start in range(0, len(items), BATCH):
            batch = items[start : start + BATCH]
            names = [name for name, _ in batch]
            try:
                lost = await _RENEW(redis, names, (*[t for _, t in batch], ttl_ms))
            except (aioredis.RedisError, OSError) as exc:
                # As a turn's own keeper did: the lock may expire; the next tick tries again.
                log.warning("renewing %d conversation locks failed: %s", len(batch), exc)
                continue
            for position in lost:
                name, token = batch[int(position) - 1]
                if self._held.get(name) == token:
                    del self._held[name]
                    log.debug("conversation lock %s was lost before its turn ended", name)


_keepers: weakref.WeakKeyDictionary[aioredis.Redis, dict[float, LockKeeper]] = (
    weakref.WeakKeyDictionary()
)


def keeper(redis: aioredis.Redis, ttl_s: float) -> LockKeeper:
    """The keeper of locks taken through `redis` with TTL `ttl_s` (one per client and TTL)."""
    by_ttl = _keepers.setdefault(redis, {})
    found = by_ttl.get(ttl_s)
    if found is None:
        found = by_ttl[ttl_s] = LockKeeper(redis, ttl_s)
    return found
