"""Knowledge uploads over HTTP, shared by the admin API and the console.

The files of a multipart body are streamed to ``data/uploads/{job_id}/`` with a byte cap
(aiohttp's `client_max_size` only guards `read()`/`post()`), then one ingestion job is
written to Redis and handed to the worker (`workers.tasks.ingest_document`). Nothing is
half queued: when Redis or the broker refuses, the files are removed and the caller
answers 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

import redis.asyncio as aioredis
from aiohttp import BodyPartReader, MultipartReader, web

from bot import ingest as kb_jobs
from bot import keys
from bot.broker import Publisher
from bot.settings import Settings

log = logging.getLogger(__name__)

_CHUNK = 1 << 16


class QueueUnavailableError(Exception):
    """Redis or the broker could not take the job: nothing was queued, try again."""


@dataclass(frozen=True)
class Upload:
    """Files received for one job: where each was stored and the name the client gave it."""

    job_id: str
    folder: Path
    files: list[tuple[Path, str]]

    @property
    def sources(self) -> list[str]:
        return [source for _, source in self.files]


async def receive(reader: MultipartReader, settings: Settings) -> Upload:
    """Stream every file part of `reader` to a new job folder, at most BOT_UPLOAD_MAX_BYTES.

    Raises 413 past the cap (the folder is removed); plain form fields are skipped.
    """
    job_id = uuid.uuid4().hex
    folder = kb_jobs.uploads_dir(settings, job_id)
    try:
        files = await _write_parts(reader, folder, settings.core.upload_max_bytes)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Upload(job_id, folder, files)


async def from_bytes(settings: Settings, source: str, data: bytes) -> Upload:
    """An upload made here (e.g. an FAQ sheet edited in the console), as if a client sent it."""
    job_id = uuid.uuid4().hex
    folder = kb_jobs.uploads_dir(settings, job_id)
    path = folder / f"0000{PurePosixPath(source).suffix.lower()[:16]}"

    def write() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    await asyncio.to_thread(write)
    return Upload(job_id, folder, [(path, source)])


async def queue(
    redis: aioredis.Redis, publisher: Publisher, kb: str, upload: Upload
) -> dict[str, Any]:
    """Record the job's progress in Redis and hand it to the worker: the job record."""
    job = kb_jobs.initial(kb, upload.sources)
    try:
        await redis.set(
            keys.ingest_job(upload.job_id),
            json.dumps(job, ensure_ascii=False),
            ex=keys.INGEST_JOB_TTL_S,
        )
        await asyncio.to_thread(
            publisher.ingest_document,
            upload.job_id,
            kb,
            [[str(path), source] for path, source in upload.files],
        )
    except Exception as exc:  # the broker or Redis is down: nothing was queued
        log.error("cannot queue ingest job %s: %s", upload.job_id, type(exc).__name__)
        shutil.rmtree(upload.folder, ignore_errors=True)
        raise QueueUnavailableError(type(exc).__name__) from exc
    log.info("queued ingest job %s: %d files into %s", upload.job_id, len(upload.files), kb)
    return job


async def read_job(redis: aioredis.Redis, job_id: str) -> dict[str, Any] | None:
    """A job's progress record, or None when unknown (or expired)."""
    raw = await redis.get(keys.ingest_job(job_id))
    if raw is None:
        return None
    found = json.loads(raw)
    return found if isinstance(found, dict) else None


def source_name(filename: str) -> str:
    """The client's file name without any directory part (no path tricks), never empty.

    Some clients (aiohttp among them) percent-encode the name; browsers send it as is.
    """
    name = PurePosixPath(unquote(filename).replace("\\", "/")).name.strip()
    return name.lstrip(".")[:200] or "upload"


async def _write_parts(reader: MultipartReader, folder: Path, limit: int) -> list[tuple[Path, str]]:
    files: list[tuple[Path, str]] = []
    total = 0
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or not part.filename:
            continue  # a plain form field or a nested multipart: not a file
        source = source_name(part.filename)
        # Stored under a number: the name came from the client; the suffix picks the loader.
        path = folder / f"{len(files):04d}{PurePosixPath(source).suffix.lower()[:16]}"
        out = await asyncio.to_thread(path.open, "wb")
        try:
            while chunk := await part.read_chunk(_CHUNK):
                total += len(chunk)
                if total > limit:
                    log.warning("refused an upload over %d bytes", limit)
                    raise web.HTTPRequestEntityTooLarge(limit, total)
                await asyncio.to_thread(out.write, chunk)
        finally:
            out.close()
        files.append((path, source))
    return files
