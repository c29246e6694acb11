"""The web chat channel: `POST /api/chat` (JSON or SSE), `POST /api/chat/rating` (👍/👎 on
an answer), the chat page at `/` and `/widget.js`, which puts it on any site.

The page gets its title, welcome text and suggested questions (BOT_WEBCHAT_*) in a JSON
block; an answer's cited documents come as structured `sources`, each with a link where
one is configured.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from importlib import resources
from typing import Any, Literal

import redis.asyncio as aioredis
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from adapters.web import read_events
from bot.db import turns
from bot.db.engine import get_engine
from bot.db.models import Conversation
from bot.domain import DEFAULT_APP, InboundMessage, Platform
from bot.pipeline.intake import IntakeUnavailableError, accept
from bot.settings.webchat import WebChatSettings
from bot.web import identity as web_identity
from bot.web.state import REDIS, SETTINGS

log = logging.getLogger(__name__)


class ChatRequest(BaseModel):
    """The body of POST /api/chat; `user`/`sig` as issued by the server (bot/web/identity.py)."""

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
    sources: list[dict[str, Any]] = []
    body: dict[str, Any]
    webchat = request.app[SETTINGS].webchat
    try:
        async with asyncio.timeout(timeout_s):
            async for event in read_events(redis, msg.event_id):
                if event.kind == "message":
                    parts.append(event.text)
                elif event.kind == "sources":
                    sources.extend(_linked(event.text, webchat))
        status, body = 200, {"reply": "\n".join(parts), "sources": sources}
    except TimeoutError:
        # The message is queued and will be answered: the client still learns who it is, so
        # the late answer reaches it on its next request.
        status, body = 504, {"error": "the reply is taking too long"}
    response = web.json_response(
        {
            **body,
            "conversation": msg.conversation_id,
            "event_id": msg.event_id,
            "user": identity.user,
            "sig": identity.sig,
        },
        status=status,
    )
    web_identity.remember(
        response, identity, secure=web_identity.secure_cookies(request, request.app[SETTINGS])
    )
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
    web_identity.remember(
        response, identity, secure=web_identity.secure_cookies(request, request.app[SETTINGS])
    )
    await response.prepare(request)
    meta = {
        "conversation": msg.conversation_id,
        "event_id": msg.event_id,
        "user": identity.user,
        "sig": identity.sig,
    }
    await response.write(_sse("start", meta))
    webchat = request.app[SETTINGS].webchat
    try:
        async with asyncio.timeout(timeout_s):
            async for event in read_events(redis, msg.event_id):
                if event.kind == "sources":
                    data: dict[str, Any] = {"sources": _linked(event.text, webchat)}
                else:
                    data = {"text": event.text}
                await response.write(_sse(event.kind, data))
    except TimeoutError:
        await response.write(_sse("error", {"error": "the reply is taking too long"}))
    await response.write_eof()
    return response


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _linked(raw: str, webchat: WebChatSettings) -> list[dict[str, Any]]:
    """The cited documents of a `sources` event, each with its link (or null)."""
    try:
        listed = json.loads(raw)
    except ValueError:
        return []
    return [
        {
            "title": s["title"],
            "section": s.get("section", ""),
            "url": webchat.source_url(s["title"]),
        }
        for s in listed
        if isinstance(s, dict) and isinstance(s.get("title"), str)
    ]


class RatingRequest(BaseModel):
    """The body of POST /api/chat/rating: 👍 or 👎 on the answer to one of the user's messages."""

    event_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    rating: Literal["up", "down"]
    user: str | None = Field(default=None, min_length=1, max_length=128)
    sig: str | None = Field(default=None, min_length=1, max_length=128)
    conversation: str | None = Field(default=None, min_length=1, max_length=64)


async def rate(request: web.Request) -> web.StreamResponse:
    """Record the customer's rating of an answer (the dashboard counts them)."""
    try:
        parsed = RatingRequest.model_validate_json(await request.read())
    except ValidationError:
        return web.json_response({"error": "send event_id and rating (up or down)"}, status=400)
    settings = request.app[SETTINGS]
    identity = await web_identity.from_request(
        request, settings, request.app[REDIS], parsed.user, parsed.sig
    )
    if isinstance(identity, web.Response):
        return identity
    # Only the user's own conversation is looked in: nobody rates another's answers.
    external_id = web_identity.conversation_of(identity.user, parsed.conversation)
    value = 1 if parsed.rating == "up" else -1
    engine = get_engine(settings.core.effective_database_url())
    found = await asyncio.to_thread(_rate, engine, external_id, parsed.event_id, value)
    if not found:
        return web.json_response({"error": "no such answer"}, status=404)
    return web.json_response({"rating": parsed.rating})


def _rate(engine: Engine, external_id: str, event_id: str, value: int) -> bool:
    with Session(engine) as session:
        conv = session.exec(
            select(Conversation).where(
                Conversation.platform == Platform.WEB.value,
                Conversation.app == DEFAULT_APP,
                Conversation.external_id == external_id,
            )
        ).first()
        return conv is not None and turns.rate(session, conv.id or 0, event_id, value)


async def widget(request: web.Request) -> web.Response:
    """The script that puts the chat on any site as a floating button (static/widget.js)."""
    script = resources.files("bot.web").joinpath("static/widget.js").read_text(encoding="utf-8")
    title = _json_for_script(request.app[SETTINGS].webchat.title)
    return web.Response(
        body=script.replace('/*TITLE*/"在线客服"', title).encode(),
        content_type="text/javascript",
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=300"},
    )


async def index(request: web.Request) -> web.Response:
    webchat = request.app[SETTINGS].webchat
    page = resources.files("bot.web").joinpath("static/index.html").read_text(encoding="utf-8")
    config = {
        "title": webchat.title,
        "welcome": webchat.welcome,
        "suggestions": webchat.suggestion_list,
    }
    return web.Response(
        text=page.replace("/*CONFIG*/{}", _json_for_script(config)), content_type="text/html"
    )


def _json_for_script(value: object) -> str:
    """JSON safe inside a <script> element: no `</script>` or `<!--` can close or confuse it."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
