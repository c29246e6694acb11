"""Knowledge pages (editors and admins): the bases, their documents and chunks, uploads, and a
hit-testing box that shows what the retriever finds for a question.

Uploads share the admin API's path (bot/web/uploads.py): each browser upload is one job,
so the page shows per-file progress from the job's record. Uploads, deletions and their
outcome are written to the audit log.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from typing import Any

from aiohttp import web
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.admin.common import engine_of, parts_of, publisher_of, redis_of, settings_of
from bot.console import i18n
from bot.console.accounts import ADMIN, EDITOR
from bot.console.guard import page, refusal
from bot.console.keys import LANG, UPLOAD
from bot.console.pages.common import audit_action
from bot.console.render import redirect, render
from bot.web import uploads
from knowledge import catalog, store
from knowledge.loaders import SUPPORTED_SUFFIXES

EDITORS = (ADMIN, EDITOR)
KB_NAME = re.compile(r"^[\w.-]{1,64}$")
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
CHUNKS_PER_PAGE = 50
HITS = 8
MAX_QUESTION = 500
ACCEPT = ",".join(sorted(SUPPORTED_SUFFIXES))


@page(*EDITORS)
async def bases(request: web.Request) -> web.StreamResponse:
    return render(request, "knowledge.html", await _bases_context(request))


@page(*EDITORS)
async def open_base(request: web.Request) -> web.StreamResponse:
    """The "open or create" box: a new base exists once its first document is uploaded."""
    name = request.query.get("name", "").strip()
    if not KB_NAME.fullmatch(name):
        t = i18n.translator(request[LANG])
        context = await _bases_context(request) | {"error": t("kb.bad_name")}
        return render(request, "knowledge.html", context, status=400)
    return redirect(f"/console/knowledge/{name}")


async def _bases_context(request: web.Request) -> dict[str, Any]:
    settings = settings_of(request)
    configured = tuple(settings.core.kb_name_list())
    rows = await asyncio.to_thread(_summaries, engine_of(request), configured)
    # While none of the bot's bases has a document, it answers from the knowledge folder
    # (the sample, by default): say so, or the first upload would surprise.
    used = [b for b in rows if b.name in configured and b.documents]
    folder = settings.core.knowledge_dir
    from_folder = str(folder) if not used and await asyncio.to_thread(folder.is_dir) else ""
    return {"bases": rows, "from_folder": from_folder, "configured": ", ".join(configured)}


@page(*EDITORS)
async def base(request: web.Request) -> web.StreamResponse:
    kb = kb_of(request)
    question = request.query.get("q", "").strip()[:MAX_QUESTION]
    hits: list[dict[str, Any]] = []
    if question:
        found = await asyncio.to_thread(parts_of(request).knowledge(kb).search, question, HITS)
        hits = [
            {
                "score": h.score,
                "source": h.source,
                "section": h.section,
                "text": h.text,
                "answer": h.answer,
            }
            for h in found
        ]
    docs = await asyncio.to_thread(_documents, engine_of(request), kb)
    t = i18n.translator(request[LANG])
    queued = request.query.get("queued", "")
    notice = ""
    if queued.isdigit():
        notice = t("kb.queued", n=int(queued))
    elif "deleted" in request.query:
        notice = t("kb.deleted")
    context = {"kb": kb, "docs": docs, "question": question, "hits": hits, "accept": ACCEPT}
    # After a plain-form upload the table refreshes itself until the job has run.
    return render(
        request,
        "knowledge_base.html",
        context | {"notice": notice, "refresh_docs": queued.isdigit()},
    )


@page(*EDITORS)
async def documents(request: web.Request) -> web.StreamResponse:
    """The documents table alone, for the page to refresh while uploads run."""
    kb = kb_of(request)
    docs = await asyncio.to_thread(_documents, engine_of(request), kb)
    return render(request, "knowledge_docs.html", {"kb": kb, "docs": docs})


@page(*EDITORS)
async def chunks(request: web.Request) -> web.StreamResponse:
    kb, doc_id = kb_of(request), int(request.match_info["doc"])
    try:
        page_no = max(1, min(int(request.query.get("page", "1")), 100_000))
    except ValueError:
        page_no = 1
    found = await asyncio.to_thread(_chunks, engine_of(request), kb, doc_id, page_no)
    if found is None:
        return refusal(request, 404, "notfound.title", "kb.no_document")
    doc, rows = found
    return render(
        request,
        "knowledge_chunks.html",
        {
            "kb": kb,
            "doc": doc,
            "chunks": rows,
            "page": page_no,
            "first": (page_no - 1) * CHUNKS_PER_PAGE + 1,
            "more": page_no * CHUNKS_PER_PAGE < doc["chunks"],
        },
    )


@page(*EDITORS)
async def upload(request: web.Request) -> web.StreamResponse:
    """Receive files (the CSRF field was the first part: the guard read it), queue one job.

    A script gets the job as JSON and follows its progress; a plain form is sent back to the
    base's page, whose documents table refreshes itself.
    """
    kb = kb_of(request)
    wants_json = "application/json" in request.headers.get("Accept", "")
    t = i18n.translator(request[LANG])
    reader = request.get(UPLOAD)
    if reader is None and request.content_type != "multipart/form-data":
        return _upload_error(request, wants_json, kb, 400, t("kb.no_files"))
    received = await uploads.receive(reader or await request.multipart(), settings_of(request))
    if not received.files:
        await asyncio.to_thread(_remove_folder, received)
        return _upload_error(request, wants_json, kb, 400, t("kb.no_files"))
    try:
        job = await uploads.queue(redis_of(request), publisher_of(request), kb, received)
    except uploads.QueueUnavailableError:
        return _upload_error(request, wants_json, kb, 503, t("kb.unavailable"))
    await audit_action(
        request,
        "knowledge.upload",
        f"kb:{kb}",
        None,
        {"job": received.job_id, "files": received.sources},
    )
    if wants_json:
        return web.json_response(
            {"job_id": received.job_id, "status": job["status"], "files": received.sources},
            status=202,
        )
    return redirect(f"/console/knowledge/{kb}?queued={len(received.files)}")


@page(*EDITORS)
async def job(request: web.Request) -> web.StreamResponse:
    job_id = request.match_info["job_id"]
    found = await uploads.read_job(redis_of(request), job_id) if JOB_ID.fullmatch(job_id) else None
    if found is None:
        return web.json_response({"error": "no such job"}, status=404)
    return web.json_response({"job_id": job_id, **found}, headers={"Cache-Control": "no-store"})


@page(*EDITORS)
async def delete(request: web.Request) -> web.StreamResponse:
    kb, doc_id = kb_of(request), int(request.match_info["doc"])
    removed = await asyncio.to_thread(_delete, engine_of(request), kb, doc_id)
    if removed is None:
        return refusal(request, 404, "notfound.title", "kb.no_document")
    await audit_action(request, "knowledge.delete", f"kb:{kb}", removed, None)
    return redirect(f"/console/knowledge/{kb}?deleted=1")


def kb_of(request: web.Request) -> str:
    kb = request.match_info["kb"]
    if not KB_NAME.fullmatch(kb):
        raise web.HTTPNotFound()
    return kb


def _upload_error(
    request: web.Request, wants_json: bool, kb: str, status: int, message: str
) -> web.StreamResponse:
    if wants_json:
        return web.json_response({"error": message}, status=status)
    return render(request, "message.html", {"title": kb, "text": message}, status=status)


def _remove_folder(received: uploads.Upload) -> None:
    shutil.rmtree(received.folder, ignore_errors=True)


def _summaries(engine: Engine, configured: tuple[str, ...]) -> list[catalog.BaseSummary]:
    with Session(engine) as session:
        return catalog.summaries(session, configured)


def _documents(engine: Engine, kb: str) -> list[dict[str, Any]]:
    with Session(engine) as session:
        return [catalog.document_json(d) for d in store.list_documents(session, kb)]


def _chunks(
    engine: Engine, kb: str, doc_id: int, page_no: int
) -> tuple[dict[str, Any], list[Any]] | None:
    with Session(engine) as session:
        doc = catalog.document(session, kb, doc_id)
        if doc is None:
            return None
        offset = (page_no - 1) * CHUNKS_PER_PAGE
        rows = catalog.chunks(session, doc_id, offset=offset, limit=CHUNKS_PER_PAGE)
        return catalog.document_json(doc), rows


def _delete(engine: Engine, kb: str, doc_id: int) -> dict[str, Any] | None:
    with Session(engine) as session:
        doc = catalog.document(session, kb, doc_id)
        if doc is None or store.remove(session, kb, doc.source) is None:
            return None
        return {"source": doc.source, "chunks": doc.chunk_count, "document_id": doc_id}
