"""A stand-in's list of what it was asked, in Redis: appended in order, the last `keep`
entries kept, read back from a position that stays valid as old entries are dropped.

Positions count every entry ever written (a counter beside the list), so a reader that asks
`since=N` gets exactly the entries after its N-th, even after the list was trimmed (an index
into the trimmed list would stop moving once the list is full).
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis

# KEYS: list, counter; ARGV: row, keep. Appends and trims in one step; answers the position.
_APPEND = """
local n = redis.call('INCR', KEYS[2])
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
return n
"""

# KEYS: list, counter; ARGV: since. Answers {total, rows after `since` still kept}.
_READ = """
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
local since = tonumber(ARGV[1])
if since >= total then return {total, {}} end
local kept = redis.call('LLEN', KEYS[1])
local skip = since - (total - kept)
if skip < 0 then skip = 0 end
return {total, redis.call('LRANGE', KEYS[1], skip, -1)}
"""


async def append(redis: aioredis.Redis, key: str, entry: dict[str, Any], keep: int) -> int:
    """Add `entry` (with the time now as `at`); its position."""
    row = json.dumps({**entry, "at": time.time()}, ensure_ascii=False)
    return int(await redis.eval(_APPEND, 2, key, f"{key}:n", row, str(keep)))


async def since(redis: aioredis.Redis, key: str, position: int) -> tuple[list[Any], int]:
    """The entries written after `position` (those still kept), and the position to ask next."""
    total, rows = await redis.eval(_READ, 2, key, f"{key}:n", str(position))
    return [json.loads(r) for r in rows], int(total)
