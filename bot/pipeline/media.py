"""Fetch the files a user sent (DingTalk pictures, files, videos) before the turn is answered.

Run by the worker ahead of the pipeline, for an adapter that can fetch media
(`adapters.base.FetchesMedia`). Never fails the turn: a code that cannot be exchanged, a
file over the app's size limit or an unreachable host is logged and counted, and the
message is answered from its placeholder text all the same. Files go to
``BOT_DATA_DIR/media/<platform>/<app>/``; a retried task finds them there and does not
fetch again (but for a file kept under the name its download gave, see `_saved`). The
returned message's attachments say where each was saved, or why not.
Files older than BOT_MEDIA_KEEP_S are deleted: after a fetch, at most once an hour per app
(whichever worker takes the Redis key), the folder is swept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from pathlib import Path

import aiohttp
from sqlalchemy.exc import SQLAlchemyError

from adapters.base import FetchesMedia
from adapters.media import Fetched, file_name
from bot import keys, metrics
from bot.db import usage
from bot.domain import Attachment, Content, InboundMessage
from bot.errors import BotError, MediaTooLargeError, PayloadError
from bot.runtime import Runtime
from bot.settings import Settings

log = logging.getLogger(__name__)

MAX_ITEMS = 4  # at most this many attachments of one message are fetched


def pending(msg: InboundMessage) -> list[Attachment]:
    """The attachments of `msg` not yet saved (nor given up on)."""
    return [a for a in msg.attachments[:MAX_ITEMS] if a.ref and not a.path and not a.error]


def wants_fetch(msg: InboundMessage) -> bool:
    """Whether `msg` carries media still to fetch."""
    return bool(pending(msg))


def media_dir(settings: Settings, msg: InboundMessage) -> Path:
    return settings.core.data_dir / "media" / msg.platform.value / msg.app


async def fetch(msg: InboundMessage, rt: Runtime) -> InboundMessage:
    """`msg` with its attachments saved; the same text, so the answer does not change."""
    try:
        sender = rt.sender(msg.platform, msg.app)
    except KeyError:
        log.error("no %s app %s: media of %s not fetched", msg.platform, msg.app, msg.event_id)
        return msg
    if not isinstance(sender, FetchesMedia) or sender.media_max_bytes <= 0:
        return msg
    folder = media_dir(rt.settings, msg)
    saved = [
        await _fetch_one(rt.http, sender, msg, index, item, folder)
        for index, item in enumerate(msg.attachments)
    ]
    await _sweep(rt, msg, folder)
    return dataclasses.replace(msg, attachments=tuple(saved))


def prune(folder: Path, keep_s: float, now: float) -> int:
    """Delete the files in `folder` last written more than `keep_s` ago; how many went."""
    removed = 0
    for path in folder.glob("*"):
        try:
            if path.is_file() and now - path.stat().st_mtime > keep_s:
                path.unlink()
                removed += 1
        except OSError:  # gone meanwhile (another worker's sweep), or not ours to delete
            continue
    return removed


async def _sweep(rt: Runtime, msg: InboundMessage, folder: Path) -> None:
    guard = keys.media_pruned(msg.platform.value, msg.app)
    if not await rt.redis.set(guard, "1", nx=True, ex=keys.MEDIA_PRUNE_EVERY_S):
        return
    keep_s = rt.settings.core.media_keep_s
    removed = await asyncio.to_thread(prune, folder, keep_s, time.time())
    if removed:
        log.info("deleted %d media file(s) of %s %s kept over %.0f s", removed, *_app(msg), keep_s)


def _app(msg: InboundMessage) -> tuple[str, str]:
    return (msg.platform.value, msg.app)


async def _fetch_one(
    http: aiohttp.ClientSession,
    sender: FetchesMedia,
    msg: InboundMessage,
    index: int,
    item: Attachment,
    folder: Path,
) -> Attachment:
    if item not in pending(msg):
        return item
    # The name does not depend on the answer's content type, so a retry finds the file.
    dest = folder / file_name(msg.event_id, index, item, "")
    if dest.is_file():
        return dataclasses.replace(item, path=str(dest), size=dest.stat().st_size, key="")
    outcome = "saved"
    try:
        fetched = await sender.fetch_media(http, msg, item, dest)
    except PayloadError as exc:
        outcome = "too_large" if isinstance(exc, MediaTooLargeError) else "refused"
        log.warning("media %d of %s not saved: %s", index, msg.event_id, exc.reason)
        saved = dataclasses.replace(item, error=outcome, key="")
    except BotError as exc:
        outcome = "failed"
        log.warning("media %d of %s not fetched: %s", index, msg.event_id, exc)
        saved = dataclasses.replace(item, error=outcome, key="")
    else:
        log.info("saved media %d of %s (%d bytes)", index, msg.event_id, fetched.size)
        saved = _saved(msg, index, item, dest, fetched)
    metrics.MEDIA_DOWNLOADS.labels(msg.platform.value, outcome).inc()
    return saved


def _saved(
    msg: InboundMessage, index: int, item: Attachment, dest: Path, got: Fetched
) -> Attachment:
    """`item` saved at `dest`. A file its message did not name (WeCom's and 微信客服's name
    only a media id) takes the name its download gave, so the reply and the file-type check
    see it, and is kept under that name (`file_name` cleans it): a retried task, which knows
    no name, does not find it and fetches it again rather than lose the name."""
    # The file's key (if it had one) has done its work: it goes no further (stored
    # pictures, files, the turn) than this fetch.
    saved = dataclasses.replace(item, path=str(dest), size=got.size, key="")
    if item.name or not got.name or item.kind is not Content.FILE:
        return saved  # a picture's or a voice's download name says nothing to anyone
    saved = dataclasses.replace(saved, name=got.name)
    named = dest.with_name(file_name(msg.event_id, index, saved, ""))
    try:
        os.replace(dest, named)
    except OSError as exc:  # kept under the plain name; the name still goes with it
        log.warning("media %d of %s not renamed: %s", index, msg.event_id, type(exc).__name__)
        return saved
    return dataclasses.replace(saved, path=str(named))


async def count(rt: Runtime, msg: InboundMessage, kind: str, amount: float) -> None:
    """Record what `msg` made the models work on (`usage.AUDIO` seconds, `usage.IMAGE`
    pictures) for GET /api/usage; a database error is logged, never the customer's problem."""
    try:
        await rt.db.session(lambda session: usage.record_media(session, msg, kind, amount))
    except SQLAlchemyError as exc:
        log.warning("%s usage of %s not recorded: %s", kind, msg.event_id, type(exc).__name__)
