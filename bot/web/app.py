"""The aiohttp web process: webhooks, web chat, the admin API, the console, health, metrics.

It verifies, normalises, deduplicates and enqueues; it never calls a model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from bot import broker, heap, wiring
from bot.admin import routes as admin
from bot.console import routes as console
from bot.settings import Settings
from bot.web import chat, health, webhooks
from bot.web.parts import WebParts
from bot.web.sandbox import dingtalk as sandbox_dingtalk
from bot.web.sandbox import feishu as sandbox_feishu
from bot.web.sandbox import wecom as sandbox
from bot.web.sandbox import wecom_aibot as sandbox_aibot
from bot.web.sandbox import wecom_kf as sandbox_kf
from bot.web.state import ADAPTERS, PARTS, PUBLISHER, REDIS, SETTINGS

REDIS_CONNECTIONS = 256
REDIS_WAIT_S = 2.0  # well inside every platform's webhook deadline


def create_app(settings: Settings, *, freeze_heap: bool = False) -> web.Application:
    """Build the web application; long-lived clients open in cleanup contexts.

    `freeze_heap` (a served process, not a test): what start-up loaded is moved out of the
    garbage collector's reach once it is loaded, see `_freeze_heap`.
    """
    app = web.Application(
        client_max_size=webhooks.MAX_BODY_BYTES, middlewares=[webhooks.body_limit]
    )
    app[SETTINGS] = settings
    app[PUBLISHER] = broker.Publisher(settings)
    app[PARTS] = WebParts(settings)
    app.cleanup_ctx.append(_redis_ctx)
    app[ADAPTERS] = {}
    app.on_startup.append(_load_adapters)
    app.on_cleanup.append(_close_publisher)
    app.router.add_route("*", "/webhooks/{platform}", webhooks.webhook)
    app.router.add_route("*", "/webhooks/{platform}/{app}", webhooks.webhook)
    app.router.add_post("/api/chat", chat.chat)
    app.router.add_post("/api/chat/rating", chat.rate)
    app.router.add_get("/", chat.index)
    app.router.add_get("/widget.js", chat.widget)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics_view)
    admin.add_routes(app)
    console.add_routes(app)
    if settings.core.sandbox:
        sandbox.add_routes(app, REDIS)
        sandbox_kf.add_routes(app, REDIS)  # 微信客服 stand-in for `bot simulate wecom_kf`
        sandbox_feishu.add_routes(app, REDIS)  # for `bot simulate feishu --stream`
        sandbox_dingtalk.add_routes(app, REDIS, settings)  # `bot simulate dingtalk --stream`
        sandbox_aibot.add_routes(app, REDIS)  # `bot simulate wecom_aibot --image`
    if freeze_heap:
        app.on_startup.append(_freeze_heap)  # last: after everything start-up loads
    return app


async def _freeze_heap(_app: web.Application) -> None:
    # A full collection of the start-up heap took 150-300 ms with the loop stopped, every
    # few thousand webhooks, which was the p99 of the ACKs (benchmarks.webhook_throughput).
    heap.settle()


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    # A blocking pool: past REDIS_CONNECTIONS requests in flight, a request waits briefly for
    # a free connection instead of failing at once (redis-py's default pool holds 100 and
    # then raises, a 503 for every webhook beyond it: 200 WeCom AI bot streams refreshing
    # at once were enough).
    pool = aioredis.BlockingConnectionPool.from_url(
        app[SETTINGS].core.redis_url,
        max_connections=REDIS_CONNECTIONS,
        timeout=REDIS_WAIT_S,
        socket_connect_timeout=2,
        socket_timeout=5,
        # After Redis restarts, each pooled connection fails once on first use: try such a
        # command once more on a fresh connection rather than answer 503. Only a broken
        # connection, never a timeout (the command may still be running); the intake script
        # is idempotent anyway (a second run finds its own dedup key).
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        health_check_interval=30,
    )
    app[REDIS] = aioredis.Redis.from_pool(pool)
    yield
    await app[REDIS].aclose()


async def _load_adapters(app: web.Application) -> None:
    app[ADAPTERS] = wiring.webhook_adapters(app[SETTINGS], app[REDIS])


async def _close_publisher(app: web.Application) -> None:
    await asyncio.to_thread(app[PUBLISHER].close)
    await asyncio.to_thread(app[PARTS].close)
