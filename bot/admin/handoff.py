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

The actions are the handoff desk's (bot/handoff/desk.py), shared with the console. A
failed send answers 502 with the error: the agent sees it and retries.
Web chat customers read human replies from the stream ``webchat:inbox:{conversation}``,
which the chat page polls through /api/chat/messages.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from bot import keys
from bot.admin import auth as admin_auth
from bot.admin.common import engine_of, redis_of, settings_of
from bot.admin.common import error as _error
from bot.db.models import Conversation
from bot.handoff import desk, state, views
from bot.settings.tokens import HANDOFF
from bot.web import identity as web_identity

log = logging.getLogger(__name__)

_MAX_ID = 2**31 - 1  # the largest id an INTEGER column holds on PostgreSQL
_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")

_Body = TypeVar("_Body", bound=BaseModel)


class ReplyBody(BaseModel):
    text: str = Field(min_length=1, max_length=4000)
    agent: str = Field(default="agent", min_length=1, max_length=64)


class ActorBody(BaseModel):
    agent: str = Field(default="agent", min_length=1, max_length=64)
    reason: str = Field(default="", max_length=500)


def _token_ok(request: web.Request) -> bool | None:
    return admin_auth.token_ok(request, settings_of(request), HANDOFF)


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
        # One line, nothing of the request's own text (a forged link is untrusted input).
        log.warning("transcript %d refused: link invalid or expired", conv_id)
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
    key = keys.webchat_inbox(web_identity.conversation_of(identity.user, named or None))
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


def _desk(request: web.Request) -> desk.Desk:
    return desk.Desk(settings_of(request), redis_of(request), engine_of(request))


async def _target(
    request: web.Request, model: type[_Body], *, allow_empty: bool = False
) -> tuple[_Body, desk.Desk, Conversation] | web.Response:
    """The request's body, the desk and the conversation it names; or the 400/404 answer."""
    body = await _body(request, model, allow_empty=allow_empty)
    if isinstance(body, web.Response):
        return body
    helper = _desk(request)
    conv = await helper.get(_id(request))
    if conv is None:
        return _error(404, "no such conversation")
    return body, helper, conv


async def reply(request: web.Request) -> web.Response:
    found = await _target(request, ReplyBody)
    if isinstance(found, web.Response):
        return found
    body, helper, conv = found
    if conv.state != state.HUMAN:
        return _error(409, "the bot holds this conversation: take it over first (POST …/handoff)")
    sent = await helper.send_to_customer(conv, body.text, body.agent)
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


async def release(request: web.Request) -> web.Response:
    found = await _target(request, ActorBody, allow_empty=True)
    if isinstance(found, web.Response):
        return found
    body, helper, conv = found
    notice = await helper.release(conv, body.agent)
    if notice is None:
        return _error(409, "the bot already holds this conversation")
    return web.json_response({"id": conv.id, "state": state.BOT, "notice": notice})


async def take_over(request: web.Request) -> web.Response:
    found = await _target(request, ActorBody, allow_empty=True)
    if isinstance(found, web.Response):
        return found
    body, helper, _ = found
    conv_id = _id(request)
    if not await helper.take_over(conv_id, body.agent, body.reason):
        return _error(409, "a human already holds this conversation")
    return web.json_response({"id": conv_id, "state": state.HUMAN})


def _id(request: web.Request) -> int:
    """The conversation id of the path. The route takes any digits: a number no row can have
    (past PostgreSQL's 32-bit INTEGER, which would fail the query, or non-ASCII digits) is a
    404 here rather than a database error."""
    text = request.match_info["id"]
    if not (text.isascii() and len(text) <= 10) or int(text) > _MAX_ID:
        raise web.HTTPNotFound(
            text=json.dumps({"error": "no such conversation"}), content_type="application/json"
        )
    return int(text)


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
