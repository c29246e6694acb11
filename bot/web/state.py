"""What the web application keeps for its handlers, under typed keys."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web

from bot.broker import Publisher
from bot.settings import Settings
from bot.web.parts import WebParts

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", aioredis.Redis)
PUBLISHER = web.AppKey("publisher", Publisher)
ADAPTERS = web.AppKey("adapters", dict)
PARTS = web.AppKey("parts", WebParts)
# The largest body a route accepts, read by the early Content-Length check (webhooks.py).
BODY_LIMIT = web.AppKey("body_limit", int)
