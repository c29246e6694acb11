"""The knowledge-base admin API under ``/api/kb``, behind the bearer token BOT_ADMIN_TOKEN.

    GET    /api/kb/{kb}/documents                 the documents, their status and errors
    POST   /api/kb/{kb}/documents                 multipart upload of one or more files: 202 + job
    GET    /api/kb/jobs/{job_id}                  an upload's progress (bot/ingest.py)
    DELETE /api/kb/{kb}/documents/{source_or_id}  a document and all its chunks
    GET    /api/kb/{kb}/search?q=...&k=5          ranked hits with their confidence
    POST   /api/kb/{kb}/reindex                   re-embed every document: 202 + job

The routes live on a sub-application, so its middleware (the token check) covers them all
and nothing else. Uploads may be far larger than a webhook body: aiohttp's
`client_max_size` is the root application's and only guards `read()`/`post()`, so the
upload streams the multipart body to disk with its own byte cap (bot/web/uploads.py,
`BOT_UPLOAD_MAX_BYTES`), and the sub-app tells the root's early Content-Length check its
larger limit through `bot.web.state.BODY_LIMIT`. Files go to ``data/uploads/{job_id}/``
and a Celery task (`workers.tasks.ingest_document`) ingests them, even small ones, so one
code path records progress. Database work runs in `asyncio.to_thread`, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import uuid
from typing import Any

from aiohttp import web
from sqlmodel import Session

from bot import ingest as kb_jobs
from bot import keys
from bot.admin.common import error as _error
from bot.admin.common import parts_of, publisher_of, redis_of, settings_of
from bot.db.engine import get_engine
from bot.settings import Settings
from bot.web import uploads
from knowledge import catalog, store
from knowledge.base import Hit
from knowledge.models import Document

log = logging.getLogger(__name__)

MAX_K = 50
_KB_NAME = re.compile(r"^[\w.-]{1,64}$")
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_CHUNK = 1 << 16


"""The handlers, holding the root app's keys for the settings and the Redis client."""


async def documents(request: web.Request) -> web.Response:
    kb = _kb(request)
    settings = settings_of(request)
    docs = await asyncio.to_thread(_list_documents, settings, kb)
    return web.json_response({"kb": kb, "documents": [catalog.document_json(d) for d in docs]})


async def upload(request: web.Request) -> web.Response:
    kb = _kb(request)
    if not request.content_type.startswith("multipart/"):
        raise web.HTTPUnsupportedMediaType(text="send multipart/form-data")
    received = await uploads.receive(await request.multipart(), settings_of(request))
    if not received.files:
        shutil.rmtree(received.folder, ignore_errors=True)
        return _error(400, "no files: send multipart/form-data with one or more file parts")
    try:
        job = await uploads.queue(redis_of(request), publisher_of(request), kb, received)
    except uploads.QueueUnavailableError:
        return _error(503, "temporarily unavailable, retry")
    return web.json_response(
        {"job_id": received.job_id, "status": job["status"], "kb": kb, "files": received.sources},
        status=202,
        headers={"Location": f"/api/kb/jobs/{received.job_id}"},
    )


async def reindex(request: web.Request) -> web.Response:
    kb = _kb(request)
    job_id = uuid.uuid4().hex
    job = kb_jobs.initial(kb, [], kind=kb_jobs.REINDEX)
    redis = redis_of(request)
    try:
        await redis.set(
            keys.ingest_job(job_id), json.dumps(job, ensure_ascii=False), ex=keys.INGEST_JOB_TTL_S
        )
        await asyncio.to_thread(publisher_of(request).ingest_document, job_id, kb, [])
    except Exception as exc:  # the broker or Redis is down: nothing was queued
        log.error("admin API: cannot queue reindex job %s: %s", job_id, type(exc).__name__)
        return _error(503, "temporarily unavailable, retry")
    log.info("admin API: queued reindex job %s for %s", job_id, kb)
    return web.json_response(
        {"job_id": job_id, "status": job["status"], "kb": kb, "kind": kb_jobs.REINDEX},
        status=202,
        headers={"Location": f"/api/kb/jobs/{job_id}"},
    )


async def job(request: web.Request) -> web.Response:
    job_id = request.match_info["job_id"]
    found = await uploads.read_job(redis_of(request), job_id) if _JOB_ID.fullmatch(job_id) else None
    if found is None:
        return _error(404, "no such job")
    return web.json_response({"job_id": job_id, **found})


async def delete(request: web.Request) -> web.Response:
    kb = _kb(request)
    target = request.match_info["source_or_id"]
    doc = await asyncio.to_thread(_remove, settings_of(request), kb, target)
    if doc is None:
        return _error(404, f"no document {target!r} in {kb!r}")
    return web.json_response({"deleted": catalog.document_json(doc)})


async def search(request: web.Request) -> web.Response:
    kb = _kb(request)
    query = request.query.get("q", "").strip()
    if not query:
        return _error(400, "q is required")
    try:
        k = int(request.query.get("k", "5"))
    except ValueError:
        return _error(400, "k must be an integer")
    k = max(1, min(k, MAX_K))
    hits = await asyncio.to_thread(parts_of(request).knowledge(kb).search, query, k)
    return web.json_response({"kb": kb, "query": query, "hits": [_hit_json(h) for h in hits]})


def _kb(request: web.Request) -> str:
    kb = request.match_info["kb"]
    if not _KB_NAME.fullmatch(kb):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "knowledge base names are 1-64 letters, digits, _ . -"}),
            content_type="application/json",
        )
    return kb


def _engine(settings: Settings) -> Any:
    return get_engine(settings.core.effective_database_url())


def _list_documents(settings: Settings, kb: str) -> list[Document]:
    with Session(_engine(settings)) as session:
        return store.list_documents(session, kb)


def _remove(settings: Settings, kb: str, target: str) -> Document | None:
    with Session(_engine(settings)) as session:
        return store.remove(session, kb, target)


def _hit_json(hit: Hit) -> dict[str, Any]:
    return {
        "score": round(hit.score, 4),
        "source": hit.source,
        "section": hit.section,
        "text": hit.text,
        "answer": hit.answer,
    }
