"""Console sessions in Redis: an opaque cookie, idle and absolute expiry, a CSRF token.

The cookie holds 32 random bytes; Redis keeps only their SHA-256 (a leaked Redis dump
holds no usable cookie). Each request that finds the session pushes its idle expiry
forward, never past the absolute one. Every web replica sees the same sessions.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from bot import keys

COOKIE = "bot_console"


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in operator, as the session recorded them at sign-in."""

    key: str
    account_id: int
    username: str
    csrf: str
    created: float


async def create(
    redis: aioredis.Redis, account_id: int, username: str, *, idle_s: float
) -> tuple[str, ConsoleSession]:
    """A new session; returns the cookie value and the session."""
    token = secrets.token_urlsafe(32)
    session = ConsoleSession(
        key=keys.console_session(token),
        account_id=account_id,
        username=username,
        csrf=secrets.token_urlsafe(32),
        created=time.time(),
    )
    fields = {
        "account_id": account_id,
        "username": username,
        "csrf": session.csrf,
        "created": repr(session.created),
    }
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(session.key, mapping=fields)  # type: ignore[arg-type]
        pipe.expire(session.key, max(1, int(idle_s)))
        await pipe.execute()
    return token, session


async def load(
    redis: aioredis.Redis, token: str, *, idle_s: float, max_age_s: float
) -> ConsoleSession | None:
    """The session of a cookie value, its idle expiry renewed; None when gone or too old."""
    if not token or len(token) > 128:
        return None
    key = keys.console_session(token)
    raw: dict[Any, Any] = await redis.hgetall(key)  # type: ignore[misc]
    if not raw:
        return None
    fields = {_text(k): _text(v) for k, v in raw.items()}
    try:
        created = float(fields["created"])
        session = ConsoleSession(
            key=key,
            account_id=int(fields["account_id"]),
            username=fields["username"],
            csrf=fields["csrf"],
            created=created,
        )
    except (KeyError, ValueError):
        await redis.delete(key)
        return None
    left = created + max_age_s - time.time()
    if left <= 0:
        await redis.delete(key)
        return None
    await redis.expire(key, max(1, int(min(idle_s, left))))
    return session


async def end(redis: aioredis.Redis, session: ConsoleSession) -> None:
    await redis.delete(session.key)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
