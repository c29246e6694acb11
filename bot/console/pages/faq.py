"""The FAQ editor and the questions the bot could not answer (editors and admins).

An FAQ sheet is a document like any other: editing an entry rewrites the sheet as CSV and
ingests it again under the same name (one job, as an upload), so the bot, the CLI and the
admin API all see the same entries. Entries typed in the console go to the base's own
sheet, ``console-faq.csv``. A save names the sheet's version (its content hash): if
someone else saved it meanwhile the save is refused, nothing is overwritten.

"Unanswered questions" are customers' questions the bot declined or answered from weak
knowledge matches, grouped by wording, newest first; one click starts an FAQ entry with
the group's questions as the similar ones.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import web
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.admin.common import engine_of, publisher_of, redis_of, settings_of
from bot.console import i18n
from bot.console.guard import form, page, refusal
from bot.console.keys import LANG
from bot.console.pages.common import audit_action
from bot.console.pages.knowledge import EDITORS, kb_of
from bot.console.render import redirect, render
from bot.db import turns
from bot.web import uploads
from knowledge import catalog, faq_sheet, store
from knowledge.faq_sheet import Entry
from knowledge.loaders import FAQ_SUFFIXES
from knowledge.models import Document
from knowledge.text.clusters import cluster

CONSOLE_SHEET = "console-faq.csv"
MAX_FIELD = 4000
MAX_SIMILAR = 50
UNANSWERED_DAYS = 30
UNANSWERED_LIMIT = 2000
EXAMPLES = 8
# Answers whose best knowledge match scored less than FAQ_MIN_SCORE plus this are listed too:
# just above the threshold, they are the answers most likely to be wrong.
WEAK_MARGIN = 0.15


@dataclass(frozen=True)
class Sheet:
    """An FAQ document of a base (None: the console sheet, not written yet) and its entries."""

    doc: Document | None
    entries: list[Entry]

    @property
    def source(self) -> str:
        return self.doc.source if self.doc is not None else CONSOLE_SHEET

    @property
    def version(self) -> str:
        return self.doc.content_hash if self.doc is not None else ""

    @property
    def editable(self) -> bool:
        return self.source.lower().endswith(".csv")


@page(*EDITORS)
async def sheet_page(request: web.Request) -> web.StreamResponse:
    kb = kb_of(request)
    doc_id = _int(request.query.get("doc", ""))
    sheet, sheets = await asyncio.to_thread(_sheets, engine_of(request), kb, doc_id)
    if sheet is None:
        return refusal(request, 404, "notfound.title", "kb.no_document")
    t = i18n.translator(request[LANG])
    notice = t("faq.saved") if "saved" in request.query else ""
    return render(
        request,
        "faq.html",
        {"kb": kb, "sheet": sheet, "sheets": sheets, "notice": notice, "draft": Entry("", "")},
    )


@page(*EDITORS)
async def entry_page(request: web.Request) -> web.StreamResponse:
    """The form for one entry: `n` of sheet `doc`, or a new one (n = "new")."""
    kb = kb_of(request)
    doc_id = _int(request.match_info["doc"])
    sheet, _ = await asyncio.to_thread(_sheets, engine_of(request), kb, doc_id or None)
    if sheet is None:
        return refusal(request, 404, "notfound.title", "kb.no_document")
    n = _int(request.match_info["n"])
    if n is not None and not 0 <= n < len(sheet.entries):
        return refusal(request, 404, "notfound.title", "faq.no_entry")
    draft = sheet.entries[n] if n is not None else _draft(request.query)
    return render(request, "faq_entry.html", {"kb": kb, "sheet": sheet, "n": n, "draft": draft})


@page(*EDITORS)
async def save(request: web.Request) -> web.StreamResponse:
    """Add (n = "new"), change or delete (action=delete) one entry of a sheet."""
    kb = kb_of(request)
    data = await form(request)
    t = i18n.translator(request[LANG])
    doc_id = _int(request.match_info["doc"])
    sheet, _ = await asyncio.to_thread(_sheets, engine_of(request), kb, doc_id or None)
    if sheet is None:
        return refusal(request, 404, "notfound.title", "kb.no_document")
    if not sheet.editable:
        return _form_error(request, kb, sheet, None, Entry("", ""), t("faq.not_csv"), 409)
    if data.get("version", "") != sheet.version:
        draft = _entry_of(data)
        return _form_error(request, kb, sheet, None, draft, t("faq.changed"), 409)
    n = _int(request.match_info["n"])
    if n is not None and not 0 <= n < len(sheet.entries):
        return refusal(request, 404, "notfound.title", "faq.no_entry")
    entries = list(sheet.entries)
    before = entries[n] if n is not None else None
    if data.get("action") == "delete" and n is not None:
        del entries[n]
        after: Entry | None = None
    else:
        after = _entry_of(data)
        if not after.question or not after.answer:
            return _form_error(request, kb, sheet, n, after, t("faq.required"), 400)
        if n is None:
            entries.append(after)
        else:
            entries[n] = after
    try:
        await _write(request, kb, sheet, entries)
    except uploads.QueueUnavailableError:
        draft = after or Entry("", "")
        return _form_error(request, kb, sheet, n, draft, t("kb.unavailable"), 503)
    action = "faq.delete" if after is None else ("faq.add" if before is None else "faq.edit")
    await audit_action(
        request,
        action,
        f"kb:{kb}/{sheet.source}",
        _entry_json(before) if before else None,
        _entry_json(after) if after else None,
    )
    doc = f"&doc={sheet.doc.id}" if sheet.doc is not None and entries else ""
    return redirect(f"/console/knowledge/{kb}/faq?saved=1{doc}")


@page(*EDITORS)
async def export(request: web.Request) -> web.StreamResponse:
    kb = kb_of(request)
    sheet, _ = await asyncio.to_thread(
        _sheets, engine_of(request), kb, _int(request.match_info["doc"])
    )
    if sheet is None or sheet.doc is None:
        return refusal(request, 404, "notfound.title", "kb.no_document")
    name = sheet.source.rsplit(".", 1)[0] + ".csv"
    return web.Response(
        body=faq_sheet.to_csv(sheet.entries),
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{_quote(name)}",
            "Cache-Control": "no-store",
        },
    )


@page(*EDITORS)
async def unanswered(request: web.Request) -> web.StreamResponse:
    settings = settings_of(request)
    since = datetime.now(UTC) - timedelta(days=UNANSWERED_DAYS)
    below = settings.core.faq_min_score + WEAK_MARGIN
    found = await asyncio.to_thread(_unanswered, engine_of(request), since, below)
    groups = [[found[i] for i in members] for members in cluster([q.text for q in found])]
    bases = settings.core.kb_name_list()
    return render(
        request,
        "unanswered.html",
        {
            "groups": [
                {
                    "text": g[0].text,
                    "count": len(g),
                    "last": g[0].at.isoformat(),
                    "conversation_id": g[0].conversation_id,
                    "examples": list(dict.fromkeys(q.text for q in g))[:EXAMPLES],
                }
                for g in groups
            ],
            "kb": bases[0] if bases else "default",
            "days": UNANSWERED_DAYS,
        },
    )


async def _write(request: web.Request, kb: str, sheet: Sheet, entries: list[Entry]) -> None:
    """Ingest the sheet with `entries` again (or remove it when none are left)."""
    if not entries and sheet.doc is not None:
        await asyncio.to_thread(_remove, engine_of(request), kb, sheet.source)
        return
    received = await uploads.from_bytes(
        settings_of(request), sheet.source, faq_sheet.to_csv(entries)
    )
    await uploads.queue(redis_of(request), publisher_of(request), kb, received)


def _form_error(
    request: web.Request,
    kb: str,
    sheet: Sheet,
    n: int | None,
    draft: Entry,
    message: str,
    status: int,
) -> web.Response:
    context = {"kb": kb, "sheet": sheet, "n": n, "draft": draft, "error": message}
    return render(request, "faq_entry.html", context, status=status)


def _sheets(
    engine: Engine, kb: str, doc_id: int | None
) -> tuple[Sheet | None, list[dict[str, Any]]]:
    """The chosen sheet (default: the console's) and every FAQ sheet of the base."""
    with Session(engine) as session:
        docs = [d for d in store.list_documents(session, kb) if _is_faq(d.source)]
        chosen: Document | None
        if doc_id is not None:
            chosen = catalog.document(session, kb, doc_id)
            if chosen is None or not _is_faq(chosen.source):
                return None, []
        else:
            chosen = next((d for d in docs if d.source == CONSOLE_SHEET), None)
        rows = catalog.chunks(session, chosen.id or 0, offset=0, limit=100_000) if chosen else []
        listed = [{"id": d.id, "source": d.source, "chunks": d.chunk_count} for d in docs]
        return Sheet(chosen, faq_sheet.entries(rows)), listed


def _unanswered(engine: Engine, since: datetime, below: float) -> list[turns.Unanswered]:
    with Session(engine) as session:
        return turns.unanswered(session, since, below=below, limit=UNANSWERED_LIMIT)


def _remove(engine: Engine, kb: str, source: str) -> None:
    with Session(engine) as session:
        store.remove(session, kb, source)


def _is_faq(source: str) -> bool:
    return any(source.lower().endswith(s) for s in FAQ_SUFFIXES)


def _entry_of(data: dict[str, str]) -> Entry:
    similar = [s.strip()[:MAX_FIELD] for s in data.get("similar", "").splitlines()]
    return Entry(
        data.get("question", "").strip()[:MAX_FIELD],
        data.get("answer", "").strip()[:MAX_FIELD],
        tuple(dict.fromkeys(s for s in similar if s))[:MAX_SIMILAR],
    )


def _draft(query: Any) -> Entry:
    """A new entry started from the unanswered list: its question and similar ones."""
    return replace(
        _entry_of({"question": query.get("question", ""), "similar": query.get("similar", "")}),
        answer="",
    )


def _entry_json(entry: Entry) -> dict[str, Any]:
    return {"question": entry.question, "answer": entry.answer, "similar": list(entry.similar)}


def _int(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) <= 18 else None


def _quote(name: str) -> str:
    return quote(name, safe="")
