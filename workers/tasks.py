"""Celery tasks. Thin: decode the payload, run the pipeline in a fresh event loop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from celery import Task

from bot import ingest as kb_jobs
from bot.broker import HANDLE_MESSAGE, INGEST_DOCUMENT
from bot.domain import InboundMessage
from bot.errors import TransientError
from bot.pipeline import events, media, pull
from bot.pipeline import turn as pipeline
from workers.celery_app import app, current_settings

log = logging.getLogger(__name__)


@app.task(
    bind=True,
    name=HANDLE_MESSAGE,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(TransientError,),
    retry_backoff=True,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=6,
)
def handle_message(self: Task, payload: dict[str, Any], seq: int = 0) -> str:
    """Answer one inbound message exactly once (see bot.pipeline)."""
    msg = InboundMessage.from_json(payload)
    try:
        if pull.is_pull(msg):
            # 微信客服's callback only says "pull now": queue what the pull returns, answer nothing.
            return asyncio.run(pull.run(msg, current_settings()))
        if events.is_platform_event(msg):
            # Group changes, check_url…: recorded (and maybe a group welcome queued), not answered.
            return asyncio.run(events.run(msg, current_settings()))
        if media.wants_fetch(msg):
            # Pictures/files the user sent: saved first; the answer comes from the placeholder.
            msg = asyncio.run(media.fetch(msg, current_settings()))
        return asyncio.run(pipeline.run(msg, current_settings(), seq=seq))
    except TransientError as exc:
        log.warning(
            "transient failure %s %s %s (try %d): %s",
            msg.platform,
            msg.app,
            msg.event_id,
            self.request.retries + 1,
            exc,
        )
        raise


@app.task(
    name=INGEST_DOCUMENT,
    acks_late=True,
    reject_on_worker_lost=True,
)
def ingest_document(job_id: str, kb: str, files: list[list[str]]) -> str:
    """Ingest uploaded files ([path, source] pairs) into `kb`, progress in `ingest:{job_id}`."""
    job = kb_jobs.run(current_settings(), job_id, kb, [(path, source) for path, source in files])
    return str(job["status"])
