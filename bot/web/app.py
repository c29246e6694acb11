"""The aiohttp web process: webhooks, web chat, health, readiness and metrics.

It verifies, normalises, deduplicates and enqueues; it never calls a model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from importlib import resources

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import text

from adapters.base import Adapter, WebhookRequest, WebhookResult
from adapters.web import read_events
from bot import metrics, wiring
from bot.admin import knowledge as admin
from bot.db import records as db
from bot.domain import DEFAULT_APP, InboundMessage, Platform
from bot.errors import WebhookError
from bot.pipeline import events, passive
from bot.pipeline.intake import IntakeUnavailableError, accept
from bot.settings import Settings
from bot.settings import apps as appconfig
from bot.web import identity as web_identity
from bot.web.sandbox import wecom as sandbox
from bot.web.sandbox import wecom_kf as sandbox_kf
from workers.celery_app import app as celery_app
from workers.celery_app import configure

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
PLATFORMS = {p.value for p in Platform if p is not Platform.WEB}

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", aioredis.Redis)
ADAPTERS = web.AppKey("adapters", dict)


def create_app(settings: Settings) -> web.Application:
    """Build the web application; long-lived clients open in cleanup contexts."""
    configure(settings)
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_body_limit])
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_redis_ctx)
    app[ADAPTERS] = {}
    app.on_startup.append(_load_adapters)
    app.router.add_route("*", "/webhooks/{platform}", webhook)
    app.router.add_route("*", "/webhooks/{platform}/{app}", webhook)
    app.router.add_post("/api/chat", chat)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    admin.add_routes(app, SETTINGS, REDIS)
    if settings.core.sandbox:
        sandbox.add_routes(app, REDIS)
        sandbox_kf.add_routes(app, REDIS)  # 微信客服 stand-in for `bot simulate wecom_kf`
    return app


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    app[REDIS] = aioredis.Redis.from_url(
        app[SETTINGS].core.redis_url, socket_connect_timeout=2, socket_timeout=5
    )
    yield
    await app[REDIS].aclose()


async def _load_adapters(app: web.Application) -> None:
    app[ADAPTERS] = wiring.webhook_adapters(app[SETTINGS], app[REDIS])


@web.middleware
async def _body_limit(request: web.Request, handler):  # type: ignore[no-untyped-def]
    # Refuse before reading when the client declares a large body; aiohttp's
    # client_max_size refuses the rest while reading. The admin upload sets its own limit.
    limit = request.config_dict.get(admin.BODY_LIMIT, MAX_BODY_BYTES)
    if request.content_length is not None and request.content_length > limit:
        log.warning(
            "refused %s: body of %d bytes over the limit", request.path, request.content_length
        )
        raise web.HTTPRequestEntityTooLarge(limit, request.content_length)
    return await handler(request)


async def webhook(request: web.Request) -> web.StreamResponse:
    """Verify, decrypt, parse, dedupe, enqueue, then answer the platform."""
    platform = request.match_info["platform"]
    app_name = request.match_info.get("app", DEFAULT_APP)
    started = time.perf_counter()
    if platform not in PLATFORMS:
        raise web.HTTPNotFound(text="unknown platform")
    adapter: Adapter | None = request.app[ADAPTERS].get((platform, app_name))
    if adapter is None:
        log.warning("webhook for %s/%s, which is not configured", platform, app_name)
        raise web.HTTPNotFound(text=f"{platform}/{app_name} is not configured")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        log.warning("refused %s %s: body over %d bytes", platform, app_name, MAX_BODY_BYTES)
        metrics.WEBHOOKS.labels(platform, "too_large").inc()
        raise
    req = WebhookRequest(
        method=request.method,
        query=dict(request.query),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
    )
    # `handle` is pure; an adapter that needs remote data first fetches it here (Feishu's
    # bot open_id, cached in Redis; bounded and never raising).
    prepare = getattr(adapter, "prepare", None)
    if prepare is not None:
        await prepare()
    try:
        result = adapter.handle(req, now=time.time())
    except WebhookError as exc:
        log.warning("rejected %s %s: %s (%s)", platform, app_name, exc.reason, type(exc).__name__)
        metrics.WEBHOOKS.labels(platform, "rejected").inc()
        return web.Response(status=exc.status, text=exc.reason)
    outcome = "handshake" if request.method == "GET" else "ignored"
    if result.message is not None:
        try:
            outcome = "queued" if await accept(request.app[REDIS], result.message) else "duplicate"
        except IntakeUnavailableError as exc:
            log.error("cannot queue %s %s %s: %s", platform, app_name, result.message.event_id, exc)
            metrics.WEBHOOKS.labels(platform, "unavailable").inc()
            return web.Response(status=503, text="temporarily unavailable, retry")
        if outcome == "queued" and events.is_platform_event(result.message):
            events.observe(result.message)  # recorded by the worker, not answered
    metrics.WEBHOOKS.labels(platform, outcome).inc()
    wait_s = float(getattr(adapter, "passive_wait_s", 0) or 0)
    if result.message is not None and wait_s > 0:
        return await _passive_answer(request, adapter, req, result, result.message, wait_s, started)
    metrics.WEBHOOK_LATENCY.labels(platform).observe(time.perf_counter() - started)
    return web.Response(
        status=result.status,
        body=result.body,
        content_type=result.content_type,
        headers=dict(result.headers),
    )


async def _passive_answer(
    request: web.Request,
    adapter: Adapter,
    req: WebhookRequest,
    result: WebhookResult,
    message: InboundMessage,
    wait_s: float,
    started: float,
) -> web.StreamResponse:
    """Wait for the worker's answer and return it as the passive reply (bot/passive.py)."""
    body, content_type = result.body, result.content_type
    try:
        waited = await passive.wait(
            request.app[REDIS],
            message,
            wait_s=wait_s,
            tries=int(getattr(adapter, "passive_tries", 1)),
        )
    except aioredis.RedisError as exc:
        # Queued already: the worker finds nobody waiting and sends through the API.
        log.warning("passive wait for %s failed: %s", message.event_id, type(exc).__name__)
    else:
        if waited.text is not None:
            body = adapter.render_passive(message, waited.text, req)  # type: ignore[attr-defined]
            content_type = "text/xml"
        elif waited.hold:
            # An earlier try: let the platform hang up and retry rather than read a final answer.
            await asyncio.sleep(
                max(0.0, wait_s + passive.HOLD_EXTRA_S - (time.perf_counter() - started))
            )
    metrics.WEBHOOK_LATENCY.labels(message.platform.value).observe(time.perf_counter() - started)
    return web.Response(
        status=result.status, body=body, content_type=content_type, headers=dict(result.headers)
    )


class ChatRequest(BaseModel):
    """The body of POST /api/chat; `user`/`sig` as issued by the server (bot/web_identity.py)."""

    user: str | None = Field(default=None, min_length=1, max_length=128)
    sig: str | None = Field(default=None, min_length=1, max_length=128)
    text: str = Field(min_length=1, max_length=4000)
    conversation: str | None = Field(default=None, min_length=1, max_length=64)


async def chat(request: web.Request) -> web.StreamResponse:
    """The web chat channel: queue the message like any platform's, then wait for the reply."""
    try:
        parsed = ChatRequest.model_validate_json(await request.read())
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "error": e["msg"]}
            for e in exc.errors(include_input=False, include_url=False)
        ]
        return web.json_response({"error": "invalid request", "details": errors}, status=400)
    redis = request.app[REDIS]
    identity = await web_identity.from_request(
        request, request.app[SETTINGS], redis, parsed.user, parsed.sig
    )
    if isinstance(identity, web.Response):
        return identity
    msg = InboundMessage(
        platform=Platform.WEB,
        app=DEFAULT_APP,
        event_id=uuid.uuid4().hex,
        # A named conversation stays under its user: nobody can join another's.
        conversation_id=web_identity.conversation_of(identity.user, parsed.conversation),
        sender_id=identity.user,
        text=parsed.text,
    )
    try:
        await accept(redis, msg)
    except IntakeUnavailableError as exc:
        log.error("cannot queue web chat %s: %s", msg.event_id, exc)
        return web.json_response({"error": "temporarily unavailable, retry"}, status=503)
    timeout_s = request.app[SETTINGS].core.webchat_timeout_s
    if "text/event-stream" in request.headers.get("Accept", ""):
        return await _chat_sse(request, redis, msg, timeout_s, identity)
    parts: list[str] = []
    try:
        async with asyncio.timeout(timeout_s):
            async for event in read_events(redis, msg.event_id):
                if event.kind == "message":
                    parts.append(event.text)
    except TimeoutError:
        return web.json_response(
            {"error": "the reply is taking too long", "event_id": msg.event_id}, status=504
        )
    response = web.json_response(
        {
            "reply": "\n".join(parts),
            "conversation": msg.conversation_id,
            "event_id": msg.event_id,
            "user": identity.user,
            "sig": identity.sig,
        }
    )
    web_identity.remember(response, identity, secure=request.secure)
    return response


async def _chat_sse(
    request: web.Request,
    redis: aioredis.Redis,
    msg: InboundMessage,
    timeout_s: float,
    identity: web_identity.WebIdentity,
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    web_identity.remember(response, identity, secure=request.secure)
    await response.prepare(request)
    meta = {
        "conversation": msg.conversation_id,
        "event_id": msg.event_id,
        "user": identity.user,
        "sig": identity.sig,
    }
    await response.write(_sse("start", meta))
    try:
        async with asyncio.timeout(timeout_s):
            async for event in read_events(redis, msg.event_id):
                await response.write(_sse(event.kind, {"text": event.text}))
    except TimeoutError:
        await response.write(_sse("error", {"error": "the reply is taking too long"}))
    await response.write_eof()
    return response


def _sse(event: str, data: dict[str, str]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def index(_request: web.Request) -> web.Response:
    page = resources.files("bot.web").joinpath("static/index.html").read_text(encoding="utf-8")
    return web.Response(text=page, content_type="text/html")


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Redis, database and broker reachable: 200, else 503 naming what is down."""
    settings = request.app[SETTINGS]
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(3):
            await request.app[REDIS].ping()
        checks["redis"] = "ok"
    except (aioredis.RedisError, TimeoutError) as exc:
        checks["redis"] = f"down: {type(exc).__name__}"
    try:
        await asyncio.wait_for(asyncio.to_thread(_db_ping, settings), timeout=5)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {type(exc).__name__}"
    try:
        await asyncio.wait_for(asyncio.to_thread(_broker_ping), timeout=5)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"down: {type(exc).__name__}"
    for platform, app_name in appconfig.stream_apps(settings):
        suffix = "" if app_name == DEFAULT_APP else f"_{app_name}"
        checks[f"{platform}{suffix}_stream"] = await _stream_check(
            request.app[REDIS], platform, app_name
        )
    ok = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ok" if ok else "unavailable", **checks}, status=200 if ok else 503
    )


async def _stream_check(redis: aioredis.Redis, platform: str, app: str = DEFAULT_APP) -> str:
    """Whether some replica's `bot stream` holds an open connection (its status key, §4.3)."""
    from bot.stream.runner import read_status

    try:
        async with asyncio.timeout(3):
            status = await read_status(redis, platform, app)
    except (aioredis.RedisError, TimeoutError) as exc:
        return f"down: {type(exc).__name__}"
    if status is None:
        return "down: no stream process holds the connection"
    if not status.get("connected"):
        return "down: reconnecting"
    return "ok"


def _db_ping(settings: Settings) -> None:
    with db.get_engine(settings.core.effective_database_url()).connect() as conn:
        conn.execute(text("SELECT 1"))


def _broker_ping() -> None:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


async def metrics_view(request: web.Request) -> web.Response:
    await _stream_gauges(request.app[SETTINGS], request.app[REDIS])
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _stream_gauges(settings: Settings, redis: aioredis.Redis) -> None:
    """The long connections as their holder last published them (it runs in another process)."""
    from bot.stream.runner import read_status

    for platform, app_name in appconfig.stream_apps(settings):
        try:
            async with asyncio.timeout(2):
                status = await read_status(redis, platform, app_name)
        except (aioredis.RedisError, TimeoutError):
            status = None
        labels = {"platform": platform, "app": app_name}
        up = bool(status and status.get("connected"))
        metrics.STREAM_UP.labels(**labels).set(1 if up else 0)
        last = status.get("last_frame_at") if status else None
        if isinstance(last, int | float):
            metrics.STREAM_HOLDER_LAST_FRAME.labels(**labels).set(last)
