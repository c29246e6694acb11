"""Who of the agents is at the desk: online, away, or offline (no heartbeat), and whose turn
it is to get the next conversation handed to the humans.

An agent sets online or away in the console header. Every console request of theirs (and
the page's heartbeat, bot/console/static/console.js) keeps that status `PRESENCE_TTL_S`
longer; a closed browser stops both, so its agent drops offline by itself. Two sorted sets
in Redis (bot/keys.py) hold it, member the username and score the time the status lapses,
so any web replica or worker lists who is online without the accounts table.

`next_online` picks the online agents in turn (by name, after the one picked last), in one
Lua script so two workers handing over at the same moment do not pick the same agent.
"""

from __future__ import annotations

from typing import cast

import redis.asyncio as aioredis

from bot import keys

ONLINE, AWAY, OFFLINE = "online", "away", "offline"
STATUSES = (ONLINE, AWAY)
_SETS = {ONLINE: keys.PRESENCE_ONLINE, AWAY: keys.PRESENCE_AWAY}

# KEYS: online set, last picked. ARGV: now, TTL of the last-picked key.
_NEXT = """
local names = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
if #names == 0 then return '' end
table.sort(names)
local last = redis.call('GET', KEYS[2]) or ''
local pick = names[1]
for _, name in ipairs(names) do
  if name > last then pick = name break end
end
redis.call('SET', KEYS[2], pick, 'EX', ARGV[2])
return pick
"""


async def set_status(
    redis: aioredis.Redis, name: str, status: str, *, now: float, ttl_s: int = keys.PRESENCE_TTL_S
) -> None:
    """Make `name` online or away (offline comes by itself, when the heartbeat stops)."""
    if status not in STATUSES:
        raise ValueError(f"a presence status is one of {', '.join(STATUSES)}")
    async with redis.pipeline(transaction=True) as pipe:
        for other, key in _SETS.items():
            if other == status:
                pipe.zadd(key, {name: now + ttl_s})
                # Every score in the set is at most now + TTL: the set may lapse with them.
                pipe.expire(key, ttl_s)
            else:
                pipe.zrem(key, name)
        await pipe.execute()


async def leave(redis: aioredis.Redis, name: str) -> None:
    """`name` is offline at once (signed out): no more conversations are assigned to them."""
    async with redis.pipeline(transaction=True) as pipe:
        for key in _SETS.values():
            pipe.zrem(key, name)
        await pipe.execute()


async def touch(
    redis: aioredis.Redis, name: str, *, now: float, ttl_s: int = keys.PRESENCE_TTL_S
) -> str:
    """Keep `name`'s status TTL longer; the status (OFFLINE once it has lapsed)."""
    async with redis.pipeline(transaction=True) as pipe:
        for key in _SETS.values():
            # A lapsed status is dropped first: the heartbeat must not bring it back.
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zadd(key, {name: now + ttl_s}, xx=True)
            pipe.zscore(key, name)
            pipe.expire(key, ttl_s)  # as in set_status: no score lies beyond now + TTL
        results = await pipe.execute()
    online, away = results[2], results[6]
    if online is not None:
        return ONLINE
    return AWAY if away is not None else OFFLINE


async def statuses(redis: aioredis.Redis, *, now: float) -> dict[str, str]:
    """Everyone online or away now, by name (the rest are offline)."""
    found: dict[str, str] = {}
    for status in (AWAY, ONLINE):  # online wins if a name is in both a moment
        names = await redis.zrangebyscore(_SETS[status], f"({now}", "+inf")
        found.update({_text(cast(bytes | str, n)): status for n in names})
    return found


async def online(redis: aioredis.Redis, *, now: float) -> list[str]:
    """The names of the agents online now, sorted."""
    return sorted(n for n, s in (await statuses(redis, now=now)).items() if s == ONLINE)


async def next_online(redis: aioredis.Redis, *, now: float) -> str:
    """The online agent whose turn it is (and remember them); "" when nobody is online."""
    picked = await redis.eval(  # type: ignore[misc]
        _NEXT, 2, keys.PRESENCE_ONLINE, keys.ASSIGN_LAST, str(now), str(keys.ASSIGN_LAST_TTL_S)
    )
    return _text(picked)


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else value or ""
