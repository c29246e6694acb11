"""Lua scripts run by their SHA (`EVALSHA`): the script text crosses the wire only when
Redis does not have it yet (a fresh or restarted server)."""

from __future__ import annotations

import hashlib
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError


class LuaScript:
    """One script; call it with a client, its keys and its arguments."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    async def __call__(
        self, redis: aioredis.Redis, keys: tuple[str, ...] | list[str], args: tuple[Any, ...]
    ) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]
        except NoScriptError:
            return await redis.eval(self.text, len(keys), *keys, *args)  # type: ignore[misc]
