"""Sign-in throttling: after too many failures a username, or an address, waits.

Failures are counted in Redis per username and per client address within a window; at the
limit further attempts are refused without checking the password, until the window ends.
The address limit is several times the username one, so one office behind one NAT address
is not locked out by one person's typos, while a password sprayer cycling usernames is.
A successful sign-in clears its username's count.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from bot import keys

ADDRESS_FACTOR = 4


async def locked_for(
    redis: aioredis.Redis, username: str, address: str, *, max_failures: int
) -> int:
    """Seconds until the next attempt is allowed; 0 when it is allowed now."""
    if max_failures <= 0:
        return 0
    counted = (keys.login_failures_of_user(username), keys.login_failures_of_address(address))
    limits = (max_failures, max_failures * ADDRESS_FACTOR)
    async with redis.pipeline(transaction=False) as pipe:
        for key in counted:
            pipe.get(key)
            pipe.ttl(key)
        values = await pipe.execute()
    wait = 0
    for index, limit in enumerate(limits):
        count, ttl = values[2 * index], values[2 * index + 1]
        if count is not None and int(count) >= limit:
            wait = max(wait, int(ttl) if ttl and ttl > 0 else 1)
    return wait


async def failed(redis: aioredis.Redis, username: str, address: str, *, window_s: int) -> None:
    """Count one failed attempt for the username and the address."""
    async with redis.pipeline(transaction=True) as pipe:
        for key in (keys.login_failures_of_user(username), keys.login_failures_of_address(address)):
            pipe.incr(key)
            pipe.expire(key, window_s, nx=True)
        await pipe.execute()


async def succeeded(redis: aioredis.Redis, username: str) -> None:
    await redis.delete(keys.login_failures_of_user(username))
