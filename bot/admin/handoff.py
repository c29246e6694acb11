"""The human agents' side of the handoff, behind the bearer token BOT_ADMIN_TOKEN.

    GET  /api/handoffs?since=ISO&trigger=T         conversations a human holds now
    GET  /api/conversations/{id}                   messages and handoff events (JSON)
    GET  /api/conversations/{id}/transcript        the same as a page; also opens with the
                                                   signed, expiring link of the group notice
    POST /api/conversations/{id}/reply             {"text", "agent"}: sent to the customer
    POST /api/conversations/{id}/release           {"agent"}: back to the bot
    POST /api/conversations/{id}/handoff           {"agent", "reason"}: an agent takes over
    GET  /api/chat/messages?user=U&sig=S&after=ID  web chat: human replies since ID (signed
                                                   web identity, bot/web/identity.py)

A reply is delivered from the web process at once, through the sender the worker uses
(`wiring.sender_for`), addressed like the customer's latest message (kept in Redis by
bot/handoff/flow.py), and stored as an outbound Message with backend "human" plus a Delivery
row per part. A failed send answers 502 with the error: the agent sees it and retries.
Web chat customers read human replies from the stream ``webchat:inbox:{conversation}``,
which the chat page polls through /api/chat/messages.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.engine import Engine

from bot import wiring
from bot.admin import auth as admin_auth
from bot.admin import handoff_views as views
from bot.admin.common import engine_of, redis_of, settings_of
from bot.admin.common import error as _error
from bot.db.models import Conversation
from bot.domain import InboundMessage, Platform, Reply
from bot.errors import BotError
from bot.handoff import flow as handoff
from bot.handoff import state
from bot.web import identity as web_identity

log = logging.getLogger(__name__)

_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
_SEND_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=5)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_Body = TypeVar("_Body", bound=BaseModel)


class ReplyBody(BaseModel):
    text: str = Field(min_length=1, max_length=4000)
    agent: str = Field(default="agent", min_length=1, max_length=64)


class ActorBody(BaseModel):
    agent: str = Field(default="agent", min_length=1, max_length=64)
    reason: str = Field(default="", max_length=500)


def inbox_key(conversation: str) -> str:
    """Where human replies to a web chat conversation go (WebSender's stream naming)."""
    return f"webchat:inbox:{conversation}"


def _token_ok(request: web.Request) -> bool | None:
    return admin_auth.token_ok(request, settings_of(request))


# --- reading ----------------------------------------------------------------------


async def handoffs(request: web.Request) -> web.Response:
    since_raw = request.query.get("since", "")
    since: datetime | None = None
    if since_raw:
        try:
            since = datetime.fromisoformat(since_raw)
        except ValueError:
            return _error(400, "since must be an ISO 8601 time")
    trigger = request.query.get("trigger", "")
    if trigger and trigger not in state.TO_HUMAN:
        return _error(400, f"trigger must be one of {', '.join(state.TO_HUMAN)}")
    rows = await asyncio.to_thread(views.held, engine_of(request), since, trigger)
    return web.json_response({"handoffs": rows})


async def conversation(request: web.Request) -> web.Response:
    found = await asyncio.to_thread(views.conversation, engine_of(request), _id(request))
    if found is None:
        return _error(404, "no such conversation")
    return web.json_response(found)


async def transcript(request: web.Request) -> web.Response:
    """A readable page: for the admin token, or the signed link from the group notice."""
    settings = settings_of(request)
    conv_id = _id(request)
    signed = state.link_valid(
        settings,
        conv_id,
        request.query.get("exp", ""),
        request.query.get("sig", ""),
        now=time.time(),
    )
    if not signed and not _token_ok(request):
        return _error(403, "this link is invalid or has expired")
    found = await asyncio.to_thread(views.conversation, engine_of(request), conv_id)
    if found is None:
        return _error(404, "no such conversation")
    return web.Response(text=views.page(found), content_type="text/html")


async def chat_messages(request: web.Request) -> web.Response:
    """Human replies for one web chat user, after stream id `after` (public, like /api/chat).

    The user is the signed web identity (`user` and `sig` query parameters, or the
    cookie; bot/web/identity.py); none at all issues a new one. Without `after` it
    returns no messages and the id to poll from.
    """
    after = request.query.get("after", "")
    if after and not _STREAM_ID.fullmatch(after):
        return _error(400, "after must be a stream id such as 1700000000000-0")
    named = request.query.get("conversation", "")
    if len(named) > 64:
        return _error(400, "conversation must be at most 64 characters")
    redis = redis_of(request)
    identity = await web_identity.from_request(
        request,
        settings_of(request),
        redis,
        request.query.get("user") or None,
        request.query.get("sig") or None,
    )
    if isinstance(identity, web.Response):
        return identity
    key = inbox_key(web_identity.conversation_of(identity.user, named or None))
    who = {"user": identity.user, "sig": identity.sig}
    if not after:
        last: Any = await redis.xrevrange(key, count=1)
        response = web.json_response(
            {"messages": [], "last": _text(last[0][0]) if last else "0-0", **who}
        )
        web_identity.remember(response, identity, secure=request.secure)
        return response
    entries: Any = await redis.xrange(key, min=f"({after}", count=100)
    messages = [
        {"id": _text(entry_id), "text": _text(fields.get(b"text", b""))}
        for entry_id, fields in entries
        if _text(fields.get(b"kind", b"")) == "message"
    ]
    last_id = _text(entries[-1][0]) if entries else after
    response = web.json_response({"messages": messages, "last": last_id, **who})
    web_identity.remember(response, identity, secure=request.secure)
    return response


# --- acting -----------------------------------------------------------------------


async def reply(request: web.Request) -> web.Response:
    body = await _body(request, ReplyBody)
    if isinstance(body, web.Response):
        return body
    engine = engine_of(request)
    conv = await asyncio.to_thread(views.get, engine, _id(request))
    if conv is None:
        return _error(404, "no such conversation")
    if conv.state != state.HUMAN:
        return _error(409, "the bot holds this conversation: take it over first (POST …/handoff)")
    sent = await _send_to_customer(request, conv, body.text, body.agent)
    if isinstance(sent, str):
        return _error(409, sent)
    if sent.error:
        return web.json_response(
            {
                "error": f"delivery failed: {sent.error}",
                "message_id": sent.message_id,
                "parts": sent.parts,
            },
            status=502,
        )
    log.info("human reply %d by %s sent to conversation %d", sent.message_id, body.agent, conv.id)
    return web.json_response({"message_id": sent.message_id, "parts": sent.parts})


async def _back_to_bot(request: web.Request, conv: Conversation) -> None:
    """A platform with its own servicers (微信客服) learns the bot answers again."""
    settings, redis = settings_of(request), redis_of(request)
    try:
        sender = wiring.sender_for(Platform(conv.platform), conv.app, settings, redis)
    except (KeyError, ValueError):
        return
    await handoff.back_to_bot(redis, conv.id or 0, None, sender)


async def _send_to_customer(
    request: web.Request,
    conv: Conversation,
    text: str,
    agent: str,
    backend: str = state.HUMAN_BACKEND,
) -> _Sent | str:
    """Record and send `text` to the conversation's customer; a str says why it cannot."""
    settings, redis, engine = (
        settings_of(request),
        redis_of(request),
        engine_of(request),
    )
    address = await _address(redis, engine, conv)
    try:
        sender = wiring.sender_for(address.platform, address.app, settings, redis)
    except KeyError:
        return f"{conv.platform}/{conv.app} is not configured on this server"
    row = await asyncio.to_thread(views.record_reply, engine, conv, text, agent, backend)
    in_reply_to = (
        f"inbox:{conv.external_id}" if address.platform is Platform.WEB else f"human:{row.id}"
    )
    reply = Reply(
        platform=address.platform,
        app=address.app,
        conversation_id=address.conversation_id,
        recipient_id=address.sender_id,
        text=text,
        in_reply_to=in_reply_to,
        is_group=address.is_group,
        route=address.route,
    )
    sent = _Sent(row.id or 0)
    async with aiohttp.ClientSession(timeout=_SEND_TIMEOUT) as http:
        for index, part in enumerate(sender.split(text)):
            try:
                platform_id = await sender.send(reply.with_text(part), http)
            except BotError as exc:
                await asyncio.to_thread(views.delivery, engine, row, index, "failed", "", str(exc))
                log.error("message %d to conversation %d failed: %s", row.id, conv.id, exc)
                sent.error = str(exc)
                return sent
            await asyncio.to_thread(views.delivery, engine, row, index, "sent", platform_id, "")
            sent.parts.append({"part": index, "platform_msg_id": platform_id})
    return sent


async def release(request: web.Request) -> web.Response:
    body = await _body(request, ActorBody, allow_empty=True)
    if isinstance(body, web.Response):
        return body
    conv_id = _id(request)
    engine = engine_of(request)
    conv = await asyncio.to_thread(views.get, engine, conv_id)
    if conv is None:
        return _error(404, "no such conversation")
    moved = await asyncio.to_thread(
        state.transition, engine, conv_id, state.BOT, "release_admin", actor=body.agent
    )
    if not moved:
        return _error(409, "the bot already holds this conversation")
    await _back_to_bot(request, conv)
    # The customer learns the bot is back (HANDOFF_RETURNED_TEXT); the release stands
    # whether or not that notice gets through.
    notice = "off"
    text = settings_of(request).handoff.returned_text.strip()
    if text:
        sent = await _send_to_customer(
            request, conv, text, body.agent, backend=handoff.RETURNED_BACKEND
        )
        error = sent if isinstance(sent, str) else sent.error
        notice = f"failed: {error}" if error else "sent"
    return web.json_response({"id": conv_id, "state": state.BOT, "notice": notice})


async def take_over(request: web.Request) -> web.Response:
    body = await _body(request, ActorBody, allow_empty=True)
    if isinstance(body, web.Response):
        return body
    conv_id = _id(request)
    engine = engine_of(request)
    if await asyncio.to_thread(views.get, engine, conv_id) is None:
        return _error(404, "no such conversation")
    moved = await asyncio.to_thread(
        state.transition,
        engine,
        conv_id,
        state.HUMAN,
        "admin",
        reason=body.reason,
        actor=body.agent,
    )
    if not moved:
        return _error(409, "a human already holds this conversation")
    return web.json_response({"id": conv_id, "state": state.HUMAN})


@dataclass
class _Sent:
    """What `_send_to_customer` did: the stored message, parts out, the error that stopped it."""

    message_id: int
    parts: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _body(
    request: web.Request, model: type[_Body], *, allow_empty: bool = False
) -> _Body | web.Response:
    raw = await request.read()
    if not raw.strip() and allow_empty:
        return model()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "error": e["msg"]}
            for e in exc.errors(include_input=False, include_url=False)
        ]
        return web.json_response({"error": "invalid request", "details": errors}, status=400)


async def _address(redis: aioredis.Redis, engine: Engine, conv: Conversation) -> InboundMessage:
    """The customer's latest message (for its platform metadata), else one rebuilt from the DB."""
    raw = await redis.get(handoff.address_key(conv.id or 0))
    if raw:
        return InboundMessage.from_json(json.loads(raw))
    sender_id = await asyncio.to_thread(views.last_sender, engine, conv.id or 0)
    return InboundMessage(
        platform=Platform(conv.platform),
        app=conv.app,
        event_id="",
        conversation_id=conv.external_id,
        sender_id=sender_id or conv.external_id,
        text="",
        is_group=conv.is_group,
    )
