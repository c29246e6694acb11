"""The handoff workbench: conversations waiting for a person, claiming, replying, passing
on to a colleague, releasing.

Agents and admins act; editors may read a conversation. Every action is written to the
audit log. The inbox and an open conversation refresh themselves from small HTML
fragments (console.js), so an agent sees new customers and new messages without reloading.
The inbox shows who of the team is online, and counts (in the page title too) the
unclaimed conversations waiting longer than HANDOFF_WAIT_ALERT_S.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from aiohttp import web

from bot.admin.common import engine_of, redis_of, settings_of
from bot.console import i18n, team
from bot.console.accounts import ADMIN, AGENT, ROLES
from bot.console.guard import form, operator, page
from bot.console.keys import LANG
from bot.console.pages import turns
from bot.console.pages.common import audit_action
from bot.console.render import redirect, render
from bot.db import desk_notes
from bot.db.models import Conversation
from bot.handoff import claims, state, views
from bot.handoff import desk as desk_module

ACTORS = (ADMIN, AGENT)
MAX_REPLY = 4000


def _desk(request: web.Request) -> desk_module.Desk:
    return desk_module.Desk(settings_of(request), redis_of(request), engine_of(request))


async def conversation_or_404(request: web.Request, conv_id: int) -> Conversation:
    return await _existing(_desk(request), conv_id)


async def _existing(desk: desk_module.Desk, conv_id: int) -> Conversation:
    conv = await desk.get(conv_id)
    if conv is None:
        raise web.HTTPNotFound()
    return conv


async def _held(request: web.Request, field: str) -> tuple[Conversation, str, str]:
    """The conversation of a desk action, who holds it, and the form's `field`, stripped."""
    value = (await form(request)).get(field, "").strip()
    desk, conv_id = _desk(request), _id(request)
    conv = await _existing(desk, conv_id)
    return conv, await desk.claimant(conv_id), value


@page(*ACTORS)
async def inbox(request: web.Request) -> web.StreamResponse:
    return render(request, "inbox.html", await _inbox(request))


@page(*ACTORS)
async def inbox_rows(request: web.Request) -> web.StreamResponse:
    return render(request, "inbox_rows.html", await _inbox(request))


async def _inbox(request: web.Request) -> dict[str, Any]:
    rows = await _rows(request)
    alert_s = settings_of(request).handoff.wait_alert_s
    return {
        "rows": rows,
        "late": sum(1 for row in rows if row["late"]),
        "alert_after": i18n.duration(i18n.translator(request[LANG]), alert_s),
        "team": await _team(request),
    }


async def _rows(request: web.Request) -> list[dict[str, Any]]:
    desk = _desk(request)
    held = await asyncio.to_thread(views.held, desk.engine, None, "")
    holders = await desk.claimed_by([row["id"] for row in held])
    queued = set(await asyncio.to_thread(claims.queue, desk.engine))  # nobody has them yet
    t = i18n.translator(request[LANG])
    alert_s = desk.settings.handoff.wait_alert_s
    now = time.time()
    rows = []
    for row in held:
        waited = max(0.0, now - datetime.fromisoformat(row["since"]).timestamp())
        holder = holders.get(row["id"], "")
        rows.append(
            {
                **row,
                "claimed_by": holder,
                "waiting": i18n.duration(t, waited),
                # Nobody has taken this customer for too long: the inbox says so.
                "late": row["id"] in queued and waited > alert_s,
            }
        )
    # Longest waiting first: the customer who has waited longest is served first.
    rows.sort(key=lambda r: r["since"])
    return rows


@page(*ROLES)
async def conversation(request: web.Request) -> web.StreamResponse:
    return await _conversation_page(request)


@page(*ROLES)
async def messages(request: web.Request) -> web.StreamResponse:
    found = await asyncio.to_thread(views.conversation, engine_of(request), _id(request))
    if found is None:
        raise web.HTTPNotFound()
    return render(request, "messages.html", {"conv": found, "turns": await _turns(request)})


@page(*ACTORS)
async def take_over(request: web.Request) -> web.StreamResponse:
    desk, who, conv_id = _desk(request), operator(request), _id(request)
    await _existing(desk, conv_id)
    moved = await desk.take_over(conv_id, who.name, reason="console")
    if moved:
        await desk.claim(conv_id, who.name)
        await audit_action(
            request,
            "conversation.take_over",
            f"conversation:{conv_id}",
            {"state": "bot"},
            {"state": "human", "agent": who.name},
        )
    return _back(conv_id, "taken_over" if moved else "")


@page(*ACTORS)
async def claim(request: web.Request) -> web.StreamResponse:
    desk, who, conv_id = _desk(request), operator(request), _id(request)
    conv = await _existing(desk, conv_id)
    if conv.state != state.HUMAN:
        return await _conversation_page(request, error_key="conv.claim_first", status=409)
    before = await desk.claimant(conv_id)
    # An admin may move a claim; an agent takes only a free conversation.
    holder = await desk.claim(conv_id, who.name, transfer=who.role == ADMIN)
    if holder != who.name:
        return await _conversation_page(request, status=409)
    await audit_action(
        request,
        "conversation.claim",
        f"conversation:{conv_id}",
        {"agent": before},
        {"agent": who.name},
    )
    return _back(conv_id, "claimed")


@page(*ACTORS)
async def reply(request: web.Request) -> web.StreamResponse:
    desk, who, conv_id = _desk(request), operator(request), _id(request)
    conv, holder, text = await _held(request, "text")
    if conv.state != state.HUMAN or holder != who.name:
        return await _conversation_page(request, error_key="conv.claim_first", status=409)
    if not text or len(text) > MAX_REPLY:
        raise web.HTTPBadRequest(text=f"a reply is 1-{MAX_REPLY} characters")
    sent = await desk.send_to_customer(conv, text, who.name)
    error = sent if isinstance(sent, str) else sent.error
    await audit_action(
        request,
        "conversation.reply",
        f"conversation:{conv_id}",
        None,
        {"chars": len(text), "delivered": not error},
    )
    if error:
        t = i18n.translator(request[LANG])
        return await _conversation_page(
            request, error=t("notice.send_failed", error=error), status=502
        )
    return _back(conv_id, "sent")


@page(*ACTORS)
async def transfer(request: web.Request) -> web.StreamResponse:
    """Pass a claimed conversation to another agent (the holder, or an admin for anyone)."""
    desk, who, conv_id = _desk(request), operator(request), _id(request)
    conv, holder, to = await _held(request, "to")
    if conv.state != state.HUMAN or (holder != who.name and who.role != ADMIN):
        return await _conversation_page(request, error_key="conv.claim_first", status=409)
    names = {m.name for m in await _team(request)}
    if to not in names or to in (holder, who.name):  # claiming is how one takes it oneself
        return await _conversation_page(request, error_key="transfer.invalid", status=400)
    if not await asyncio.to_thread(claims.transfer, desk.engine, conv_id, holder, to):
        return await _conversation_page(request, status=409)  # it moved meanwhile: says to whom
    await audit_action(
        request,
        "conversation.transfer",
        f"conversation:{conv_id}",
        {"agent": holder},
        {"agent": to},
    )
    return _back(conv_id, "transferred")


@page(*ACTORS)
async def release(request: web.Request) -> web.StreamResponse:
    desk, who, conv_id = _desk(request), operator(request), _id(request)
    conv = await _existing(desk, conv_id)
    holder = await desk.claimant(conv_id)
    if holder and holder != who.name and who.role != ADMIN:
        return await _conversation_page(request, status=409)
    notice = await desk.release(conv, who.name)
    if notice is not None:
        await audit_action(
            request,
            "conversation.release",
            f"conversation:{conv_id}",
            {"state": "human", "agent": holder},
            {"state": "bot", "notice": notice},
        )
    return _back(conv_id, "released" if notice is not None else "")


async def _conversation_page(
    request: web.Request, *, error_key: str = "", error: str = "", status: int = 200
) -> web.Response:
    desk, conv_id = _desk(request), _id(request)
    found = await asyncio.to_thread(views.conversation, desk.engine, conv_id)
    t = i18n.translator(request[LANG])
    if found is None:
        return render(
            request,
            "message.html",
            {"title": t("notfound.title"), "text": t("notfound.text")},
            status=404,
        )
    claimed_by = await desk.claimant(conv_id)
    who = operator(request)
    # The holder passes a conversation on; an admin may pass anyone's (or an unclaimed one).
    can_pass = found["state"] == state.HUMAN and (claimed_by == who.name or who.role == ADMIN)
    done = request.query.get("done", "")
    notice = t(f"notice.{done}") if done in _NOTICES else ""
    if status == 409 and not error_key and not error and claimed_by:
        error = t("conv.claimed_by_other", agent=claimed_by)
    return render(
        request,
        "conversation.html",
        {
            "conv": found,
            "turns": await _turns(request),
            "notes": await asyncio.to_thread(desk_notes.notes, desk.engine, conv_id),
            "canned": await asyncio.to_thread(desk_notes.canned, desk.engine),
            "claimed_by": claimed_by,
            "can_act": who.role in ACTORS,
            # Whom it can be passed to: the team but its holder and oneself, online first.
            "transfer_to": [m for m in await _team(request) if m.name not in (claimed_by, who.name)]
            if can_pass
            else [],
            "notice": notice,
            "error": error or (t(error_key) if error_key else ""),
        },
        status=status,
    )


_NOTICES = frozenset({"claimed", "taken_over", "sent", "released", "noted", "transferred"})


async def _team(request: web.Request) -> list[team.Member]:
    return await team.members(engine_of(request), redis_of(request), now=time.time())


def _back(conv_id: int, done: str) -> web.StreamResponse:
    suffix = f"?done={done}" if done else ""
    return redirect(f"/console/conversations/{conv_id}{suffix}")


async def _turns(request: web.Request) -> dict[int, dict[str, Any]]:
    role = operator(request).role
    return await asyncio.to_thread(turns.for_conversation, engine_of(request), _id(request), role)


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])
