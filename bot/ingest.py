"""Ingestion jobs: uploaded files waiting in `data/uploads`, ingested by a Celery task.

A job's progress lives in Redis under ``ingest:{job_id}`` as JSON::

    {"status": "queued" | "running" | "done" | "failed", "kind": "ingest" | "reindex",
     "kb": ..., "total": 2, "done": 1, "embedded": 40, "to_embed": 120,
     "results": [{"source", "outcome", "chunks", "error", "document_id"}], "error": ""}

The web process writes it when it queues the job (`start`); the worker runs the same
ingestion job as `bot kb add` (`knowledge.ingest_job`, files read in its own process) and
updates the record as each batch of files is committed, and about every second while their
chunks are being embedded (`run`); a task redelivered after a crash resumes (the files
already written are unchanged); the
admin API reads it (`read`). A ``reindex`` job has no files: it re-embeds every document
of the base with the configured embedding model, `done`/`total` counting documents. The
uploads are deleted once the job is done, so a redelivered task finds the job finished
and does nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import redis
from sqlmodel import Session

from bot import keys
from bot.db.engine import get_engine
from bot.settings import Settings
from knowledge import ingest_job, reindex, store
from knowledge.embedding import Embedder

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
INGEST, REINDEX = "ingest", "reindex"  # job kinds
_EMBED_SAVE_EVERY_S = 1.0  # how often embedding progress is written while a file embeds


def uploads_dir(settings: Settings, job_id: str) -> Path:
    """Where the files of one upload wait for the worker (shared by web and worker)."""
    return (settings.core.data_dir / "uploads" / job_id).resolve()


def initial(kb: str, sources: list[str], *, kind: str = INGEST) -> dict[str, Any]:
    """The progress record of a job just queued (`kind`: INGEST files, or REINDEX a base)."""
    return {
        "status": QUEUED,
        "kind": kind,
        "kb": kb,
        "total": len(sources),
        "done": 0,
        "sources": sources,
        "results": [],
        "embedded": 0,  # texts embedded in the file being ingested
        "to_embed": 0,
        "error": "",
    }


def run(settings: Settings, job_id: str, kb: str, files: list[tuple[str, str]]) -> dict[str, Any]:
    """Ingest `files` ((path, source) pairs) into `kb`, recording progress after each."""
    r = redis.Redis.from_url(settings.core.redis_url, socket_connect_timeout=3, socket_timeout=10)
    embedder: Embedder | None = None
    try:
        raw = r.get(keys.ingest_job(job_id))
        job = json.loads(raw) if raw else initial(kb, [s for _, s in files])
        if job["status"] in (DONE, FAILED):
            log.info("ingest job %s already %s", job_id, job["status"])
            return dict(job)
        job.update(status=RUNNING, done=0, results=[])
        _save(r, job_id, job)
        embedder = _embedder(settings)

        def on_embed(done: int, total: int) -> None:
            job.update(embedded=done, to_embed=total)
            now = time.monotonic()
            if done == total or now - saved_at[0] >= _EMBED_SAVE_EVERY_S:
                saved_at[0] = now
                _save(r, job_id, job)

        saved_at = [time.monotonic()]
        try:
            engine = get_engine(settings.core.effective_database_url())
            if job.get("kind") == REINDEX:
                with Session(engine) as session:
                    _reindex(r, job_id, job, session, kb, embedder)

            def on_result(result: store.IngestResult) -> None:
                doc = result.document
                job["results"].append(
                    {
                        "source": result.source,
                        "outcome": result.outcome,
                        "chunks": result.chunks,
                        "error": result.error,
                        "document_id": doc.id if doc is not None else None,
                    }
                )
                job["done"] += 1
                _save(r, job_id, job)

            # The job `bot kb add` runs, read here: a pool process starts no processes.
            paths = [(Path(path), source) for path, source in files]
            if paths:
                ingest_job.run(
                    engine, kb, paths, embedder=embedder, on_result=on_result, on_embed=on_embed
                )
        except Exception as exc:
            # The edge of the task: record why, so the API shows it, then let Celery log it.
            job.update(status=FAILED, error=f"{type(exc).__name__}: {exc}"[:2000])
            _save(r, job_id, job)
            raise
        job["status"] = DONE
        _save(r, job_id, job)
        log.info("ingest job %s done: %s", job_id, store.outcomes(_results(job)))
    finally:
        r.close()
        if embedder is not None:
            embedder.close()
    for folder in {Path(path).parent for path, _ in files}:
        if folder.name == job_id:  # only the job's own upload folder
            shutil.rmtree(folder, ignore_errors=True)
    return dict(job)


def _embedder(settings: Settings) -> Embedder | None:
    from bot.wiring import embedder  # the composition root owns the process-wide client

    return embedder(settings)


def _reindex(
    r: redis.Redis,
    job_id: str,
    job: dict[str, Any],
    session: Session,
    kb: str,
    embedder: Embedder | None,
) -> None:
    """Re-embed every document of `kb`; progress counts documents."""
    if embedder is None:
        raise RuntimeError("no embedding service configured (EMBEDDING_BASE_URL / _PROVIDER)")

    def on_progress(done: int, total: int) -> None:
        job.update(done=done, total=total)
        _save(r, job_id, job)

    result = reindex.reindex(session, kb, embedder, on_progress=on_progress)
    job["results"].append(
        {
            "source": "*",
            "outcome": "reindexed",
            "chunks": result.vectors,
            "error": result.error,
            "documents": result.documents,
            "failed": result.failed,
        }
    )


def _results(job: dict[str, Any]) -> list[store.IngestResult]:
    return [
        store.IngestResult(x["outcome"], x["source"], None)
        for x in job["results"]
        if x["outcome"] != "reindexed"
    ]


def _save(r: redis.Redis, job_id: str, job: dict[str, Any]) -> None:
    r.set(keys.ingest_job(job_id), json.dumps(job, ensure_ascii=False), ex=keys.INGEST_JOB_TTL_S)
