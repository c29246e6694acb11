"""Your own synonyms (editors and admins): product nicknames mapped to the word the
documents use, the list `bot kb synonyms` and ``/api/kb/synonyms`` edit
(`knowledge.synonym_table`). One list for every knowledge base; workers use a change
within seconds, nothing is re-indexed. Each add and removal is written to the audit log.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.admin.common import engine_of
from bot.console import i18n
from bot.console.guard import form, page
from bot.console.keys import LANG
from bot.console.pages.common import audit_action
from bot.console.pages.knowledge import EDITORS
from bot.console.render import redirect, render
from knowledge import synonym_table
from knowledge.synonym_table import MAX_CHARS, SynonymError

TARGET = "synonyms"


@page(*EDITORS)
async def synonyms_page(request: web.Request) -> web.StreamResponse:
    t = i18n.translator(request[LANG])
    notice = ""
    if "added" in request.query:
        notice = t("syn.added")
    elif "removed" in request.query:
        notice = t("syn.removed")
    return await _render(request, notice=notice)


@page(*EDITORS)
async def add(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    variant, standard = data.get("variant", ""), data.get("standard", "")
    try:
        stored = await asyncio.to_thread(_add, engine_of(request), variant, standard)
    except SynonymError as exc:
        t = i18n.translator(request[LANG])
        error = t(f"syn.err.{exc.code}", **exc.values)
        return await _render(
            request, error=error, draft={"variant": variant, "standard": standard}, status=400
        )
    await audit_action(request, "synonym.add", TARGET, None, stored)
    return redirect("/console/knowledge/synonyms?added=1")


@page(*EDITORS)
async def remove(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    removed = await asyncio.to_thread(_remove, engine_of(request), data.get("variant", ""))
    if removed is not None:
        await audit_action(request, "synonym.delete", TARGET, removed, None)
    return redirect("/console/knowledge/synonyms?removed=1")


async def _render(
    request: web.Request,
    *,
    notice: str = "",
    error: str = "",
    draft: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    pairs = await asyncio.to_thread(_load, engine_of(request))
    context: dict[str, Any] = {
        "pairs": pairs,
        "notice": notice,
        "error": error,
        "draft": draft or {"variant": "", "standard": ""},
        "max_chars": MAX_CHARS,
    }
    return render(request, "synonyms.html", context, status=status)


def _load(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        return synonym_table.load(session)


def _add(engine: Engine, variant: str, standard: str) -> dict[str, str]:
    with Session(engine) as session:
        row = synonym_table.add(session, variant, standard)
        return {"variant": row.variant, "standard": row.canonical}


def _remove(engine: Engine, variant: str) -> dict[str, str] | None:
    with Session(engine) as session:
        row = synonym_table.remove(session, variant)
        return {"variant": row.variant, "standard": row.canonical} if row else None
