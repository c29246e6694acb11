"""Liveness, readiness and metrics: `/healthz`, `/readyz`, `/metrics`."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from bot import metrics
from bot.admin import auth
from bot.db.engine import get_engine
from bot.domain import DEFAULT_APP
from bot.settings import Settings
from bot.settings import apps as appconfig
from bot.settings.tokens import ADMIN
from bot.web.state import PUBLISHER, REDIS, SETTINGS

log = logging.getLogger(__name__)

DOCTOR_TIMEOUT_S = 30.0
SERVING = ("redis", "database", "broker")  # what this process needs to serve


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Redis, database and broker reachable: 200, else 503 naming what is down.

    Each long connection (`bot stream`) is reported too, but does not make this process
    unready: webhooks, the web chat and the console work without it, and an orchestrator
    taking every web replica out because another process is down would turn one outage
    into all of them (its own probe is `bot health stream`; the metric `bot_stream_up`).

    `?verbose=1` adds every `bot doctor` check (tokens, callback keys, public URL, models,
    embeddings) under "doctor", for an admin token only: the answers describe the setup.
    The status code still says only whether this process can serve.
    """
    settings = request.app[SETTINGS]
    verbose = request.query.get("verbose") == "1"
    if verbose:
        refused = auth.refusal(request, settings, ADMIN)
        if refused is not None:
            return refused
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
        await asyncio.wait_for(asyncio.to_thread(request.app[PUBLISHER].ping), timeout=5)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"down: {type(exc).__name__}"
    for platform, app_name in appconfig.stream_apps(settings):
        suffix = "" if app_name == DEFAULT_APP else f"_{app_name}"
        checks[f"{platform}{suffix}_stream"] = await _stream_check(
            request.app[REDIS], platform, app_name
        )
    ok = all(checks[name] == "ok" for name in SERVING)
    body: dict[str, object] = {"status": "ok" if ok else "unavailable", **checks}
    if verbose:
        body["doctor"] = await _doctor(settings)
    return web.json_response(body, status=200 if ok else 503)


async def _doctor(settings: Settings) -> list[dict[str, str]]:
    """Every doctor check (each has its own short timeouts; the whole is bounded too)."""
    from bot.doctor.run import run_bounded  # every adapter: loaded on the first ask only

    return [r.to_json() for r in await run_bounded(settings, DOCTOR_TIMEOUT_S)]


async def _stream_check(redis: aioredis.Redis, platform: str, app: str = DEFAULT_APP) -> str:
    """Whether some replica's `bot stream` holds an open connection (its status key)."""
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
    with get_engine(settings.core.effective_database_url()).connect() as conn:
        conn.execute(text("SELECT 1"))


async def metrics_view(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    token = settings.core.metrics_token.get_secret_value()
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        # Header bytes that are not UTF-8 arrive as surrogate escapes: compared, never a 500.
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode()):
            raise web.HTTPUnauthorized(text="metrics need Authorization: Bearer BOT_METRICS_TOKEN")
    elif _forwarded(request) or not _private(request.remote):
        # Through a reverse proxy or an Ingress every request comes from a private address:
        # the proxy's. Who is really asking is unknown, so only the token opens it then.
        raise web.HTTPForbidden(
            text="metrics answer private addresses only; set BOT_METRICS_TOKEN to scrape from afar"
        )
    await _stream_gauges(settings, request.app[REDIS])
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _forwarded(request: web.Request) -> bool:
    """Whether a proxy passed the request on (it says so in these headers)."""
    return any(h in request.headers for h in ("Forwarded", "X-Forwarded-For", "X-Real-IP"))


def _private(address: str | None) -> bool:
    try:
        return ipaddress.ip_address(address or "").is_private
    except ValueError:
        return False


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
