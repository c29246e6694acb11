"""What every admin module reads off a request, and the admin API's error shape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from aiohttp import web
from sqlalchemy.engine import Engine

from bot.broker import Publisher
from bot.db.engine import get_engine
from bot.settings import Settings
from bot.web.parts import WebParts
from bot.web.state import PARTS, PUBLISHER, REDIS, SETTINGS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def settings_of(request: web.Request) -> Settings:
    return request.config_dict[SETTINGS]


def redis_of(request: web.Request) -> aioredis.Redis:
    return request.config_dict[REDIS]


def publisher_of(request: web.Request) -> Publisher:
    return request.config_dict[PUBLISHER]


def parts_of(request: web.Request) -> WebParts:
    return request.config_dict[PARTS]


def engine_of(request: web.Request) -> Engine:
    return get_engine(settings_of(request).core.effective_database_url())


def error(status: int, message: str, **headers: str) -> web.Response:
    """The admin API's error body: `{"error": message}`."""
    return web.json_response({"error": message}, status=status, headers=headers)
