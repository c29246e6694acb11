"""The webhook route: verify, decrypt, parse, dedupe, enqueue, then answer the platform.

It never calls a model; the one wait is an Official Account passive reply
(bot/pipeline/passive.py), which holds the request for an answer already being written.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import Counter, Histogram

from adapters import errcodes
from adapters.base import (
    Adapter,
    PassiveReplies,
    Prepares,
    RefreshesStreams,
    WebhookRequest,
    WebhookResult,
    has,
)
from bot import keys, metrics
from bot.domain import DEFAULT_APP, InboundMessage, Platform
from bot.errors import WebhookError
from bot.pipeline import events, passive
from bot.pipeline.intake import REPLAYED, IntakeUnavailableError, accept
from bot.web.state import ADAPTERS, BODY_LIMIT, REDIS

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
# Verifying and parsing a body this large runs in a thread, so no request, however
# hostile, holds the event loop (and every other request) for its parse. Real callbacks are
# a few KB and stay on the loop, where they cost tens of microseconds.
OFFLOAD_BYTES = 16 << 10
# Longer than any platform's timestamp window (DingTalk: one hour either way).
PLATFORMS = {p.value for p in Platform if p is not Platform.WEB}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@functools.cache
def _counter(platform: str, outcome: str) -> Counter:
    # prometheus_client checks and locks on every labels() call; a webhook counts once
    # and observes once, so the children are looked up once per (platform, outcome).
    return metrics.WEBHOOKS.labels(platform, outcome)


def _count(platform: str, outcome: str) -> None:
    _counter(platform, outcome).inc()


@functools.cache
def _latency(platform: str) -> Histogram:
    return metrics.WEBHOOK_LATENCY.labels(platform)


@web.middleware
async def body_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Refuse before reading when the client declares a large body; aiohttp's
    # client_max_size refuses the rest while reading. The admin upload sets its own limit.
    limit = request.config_dict.get(BODY_LIMIT, MAX_BODY_BYTES)
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
        _count(platform, "too_large")
        raise
    req = WebhookRequest(
        method=request.method,
        query=dict(request.query),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
    )
    # `handle` is pure; an adapter that needs remote data first fetches it here (Feishu's
    # bot open_id, cached in Redis; bounded and never raising).
    if has(adapter, Prepares):
        await cast(Prepares, adapter).prepare()
    try:
        if len(body) > OFFLOAD_BYTES:
            result = await asyncio.to_thread(adapter.handle, req, now=time.time())
        else:
            result = adapter.handle(req, now=time.time())
    except WebhookError as exc:
        known = errcodes.refused_callback(platform, exc)
        log.warning(
            "rejected %s %s: %s (%s)%s",
            platform,
            app_name,
            exc.reason,
            type(exc).__name__,
            f"; if the platform sent it: {known.line()}" if known else "",
        )
        _count(platform, "rejected")
        return web.Response(status=exc.status, text=exc.reason)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as exc:
        # A body shaped in a way no parser expected: still the caller's fault, one line, 400.
        # (The adapters raise PayloadError for every case we know; the fuzz tests look for more.)
        log.warning("rejected %s %s: unparsable body (%s)", platform, app_name, type(exc).__name__)
        _count(platform, "rejected")
        return web.Response(status=400, text="malformed request")
    if result.refresh and has(adapter, RefreshesStreams):
        # The answer so far lives in Redis (WeCom 智能机器人 stream refresh): any replica answers.
        try:
            result = await cast(RefreshesStreams, adapter).refresh(req, result)
        except aioredis.RedisError as exc:
            log.error(
                "cannot refresh a stream of %s %s: %s", platform, app_name, type(exc).__name__
            )
            _count(platform, "unavailable")
            return web.Response(status=503, text="temporarily unavailable, retry")
        _count(platform, "refresh")
        _latency(platform).observe(time.perf_counter() - started)
        return web.Response(
            status=result.status, body=result.body, content_type=result.content_type
        )
    outcome = "handshake" if request.method == "GET" else "ignored"
    if result.message is not None:
        claim = _signature_claim(platform, app_name, result)
        try:
            queued = await accept(request.app[REDIS], result.message, claim)
        except IntakeUnavailableError as exc:
            log.error("cannot queue %s %s %s: %s", platform, app_name, result.message.event_id, exc)
            _count(platform, "unavailable")
            return web.Response(status=503, text="temporarily unavailable, retry")
        if queued == REPLAYED:
            log.warning(
                "rejected %s %s: a signature already used for another message", platform, app_name
            )
            _count(platform, "rejected")
            return web.Response(status=401, text="signature already used")
        outcome = "queued" if queued else "duplicate"
        if outcome == "queued" and events.is_platform_event(result.message):
            events.observe(result.message)  # recorded by the worker, not answered
    _count(platform, outcome)
    if result.message is not None and passive.waits_passively(adapter):
        return await _passive_answer(request, adapter, req, result, result.message, started)
    _latency(platform).observe(time.perf_counter() - started)
    return web.Response(
        status=result.status,
        body=result.body,
        content_type=result.content_type,
        headers=dict(result.headers),
    )


def _signature_claim(platform: str, app_name: str, result: WebhookResult) -> str:
    """The Redis key a single-use signature claims (checked in the intake step), or ""."""
    if not result.single_use_signature:
        return ""
    digest = hashlib.sha256(result.single_use_signature.encode()).hexdigest()
    return keys.signature_seen(platform, app_name, digest)


async def _passive_answer(
    request: web.Request,
    adapter: PassiveReplies,
    req: WebhookRequest,
    result: WebhookResult,
    message: InboundMessage,
    started: float,
) -> web.StreamResponse:
    """Wait for the worker's answer and return it as the passive reply (pipeline/passive.py)."""
    body, content_type = result.body, result.content_type
    wait_s = adapter.passive_wait_s
    try:
        waited = await passive.wait(
            request.app[REDIS],
            message,
            wait_s=wait_s,
            tries=adapter.passive_tries,
        )
    except aioredis.RedisError as exc:
        # Queued already: the worker finds nobody waiting and sends through the API.
        log.warning("passive wait for %s failed: %s", message.event_id, type(exc).__name__)
    else:
        if waited.text is not None:
            body = adapter.render_passive(message, waited.text, req)
            content_type = "text/xml"
        elif waited.hold:
            # An earlier try: let the platform hang up and retry rather than read a final answer.
            await asyncio.sleep(
                max(0.0, wait_s + passive.HOLD_EXTRA_S - (time.perf_counter() - started))
            )
    _latency(message.platform.value).observe(time.perf_counter() - started)
    return web.Response(
        status=result.status, body=body, content_type=content_type, headers=dict(result.headers)
    )
