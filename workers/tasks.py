"""Celery tasks. Thin: decode, then wait for the async job on the worker's shared loop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from celery.exceptions import Reject

from bot import ingest
from bot.broker import HANDLE_MESSAGE, INGEST_DOCUMENT
from bot.pipeline import jobs
from workers import runtime
from workers.celery_app import app, current_settings
from workers.greenlets import wait_for

log = logging.getLogger(__name__)


async def _handle(payload: dict[str, Any], seq: int) -> str:
    return await jobs.handle_message(runtime.get, payload, seq)


@app.task(name=HANDLE_MESSAGE, acks_late=True, reject_on_worker_lost=True)
def handle_message(payload: dict[str, Any], seq: int = 0) -> str:
    """Answer one inbound message exactly once (bot/pipeline/jobs.py, turn.py)."""
    try:
        return wait_for(_handle(payload, seq))
    except jobs.RequeueError as exc:
        # Tried in-process for about a minute: back on the queue for a later try.
        raise Reject(str(exc), requeue=True) from exc


# Acknowledged on receipt: an ingestion may run for minutes, longer than the visibility
# timeout tuned for turns, and must not be redelivered while it runs. A worker killed
# mid-ingestion leaves the job unfinished; uploading the files again resumes it (documents
# already stored are skipped by their content hash).
@app.task(name=INGEST_DOCUMENT, acks_late=False)
def ingest_document(job_id: str, kb: str, files: list[list[str]]) -> str:
    """Ingest uploaded files ([path, source] pairs) into `kb`, progress in `ingest:{job_id}`."""
    pairs = [(path, source) for path, source in files]
    # Parsing, chunking and embedding block: a thread, never the shared loop.
    job = wait_for(asyncio.to_thread(ingest.run, current_settings(), job_id, kb, pairs))
    return str(job["status"])
