"""The workbench's helpers: canned replies (admins keep them, agents insert them) and
internal notes on a conversation (every operator who may act writes them; the customer
never sees them). Both are in the audit log."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bot.admin.common import engine_of
from bot.console import i18n
from bot.console.accounts import ADMIN
from bot.console.guard import form, operator, page
from bot.console.keys import LANG
from bot.console.pages.common import audit_action
from bot.console.pages.inbox import ACTORS, MAX_REPLY, conversation_or_404
from bot.console.render import redirect, render
from bot.db import desk_notes

MAX_TITLE = 64


@page(ADMIN)
async def canned_page(request: web.Request) -> web.StreamResponse:
    rows = await asyncio.to_thread(desk_notes.canned, engine_of(request))
    return render(request, "canned.html", {"rows": rows, "max_reply": MAX_REPLY})


@page(ADMIN)
async def add_canned(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    title, text = data.get("title", "").strip(), data.get("text", "").strip()
    if not title or not text or len(title) > MAX_TITLE or len(text) > MAX_REPLY:
        t = i18n.translator(request[LANG])
        rows = await asyncio.to_thread(desk_notes.canned, engine_of(request))
        context = {"rows": rows, "max_reply": MAX_REPLY, "error": t("canned.invalid")}
        return render(request, "canned.html", context, status=400)
    row = await asyncio.to_thread(
        desk_notes.add_canned, engine_of(request), title, text, operator(request).name
    )
    await audit_action(request, "canned.add", f"canned:{row.id}", None, {"title": title})
    return redirect("/console/canned?added=1")


@page(ADMIN)
async def remove_canned(request: web.Request) -> web.StreamResponse:
    reply_id = int(request.match_info["id"])
    row = await asyncio.to_thread(desk_notes.remove_canned, engine_of(request), reply_id)
    if row is None:
        raise web.HTTPNotFound()
    await audit_action(request, "canned.remove", f"canned:{reply_id}", {"title": row.title}, None)
    return redirect("/console/canned")


@page(*ACTORS)
async def add_note(request: web.Request) -> web.StreamResponse:
    conv_id = int(request.match_info["id"])
    await conversation_or_404(request, conv_id)
    text = (await form(request)).get("text", "").strip()
    if not text or len(text) > MAX_REPLY:
        raise web.HTTPBadRequest(text=f"a note is 1-{MAX_REPLY} characters")
    who = operator(request).name
    await asyncio.to_thread(desk_notes.add_note, engine_of(request), conv_id, who, text)
    await audit_action(
        request, "conversation.note", f"conversation:{conv_id}", None, {"chars": len(text)}
    )
    return redirect(f"/console/conversations/{conv_id}?done=noted")
