"""Fetch the media a user sent (DingTalk pictures, files, videos) before the turn is answered.

Run by the worker ahead of the pipeline. Never fails the turn: a code that cannot be
exchanged, a file over ``DINGTALK_MEDIA_MAX_BYTES`` or an unreachable host is logged and
counted, and the message is answered from its placeholder text all the same. Files go to
``BOT_DATA_DIR/media/dingtalk/<app>/``; a retried task finds them there and does not fetch
again. What was saved is described in ``meta["media_saved"]`` (kind, name, path, bytes).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from adapters.dingtalk import media as dingtalk_media
from adapters.dingtalk.adapter import DingTalkAdapter
from bot import metrics, wiring
from bot.domain import InboundMessage, Platform
from bot.errors import BotError, PayloadError
from bot.settings import DingTalkSettings, Settings
from bot.settings import apps as appconfig

log = logging.getLogger(__name__)


def _section(msg: InboundMessage, settings: Settings) -> DingTalkSettings | None:
    section = appconfig.section(settings, msg.platform.value, msg.app)
    return section if isinstance(section, DingTalkSettings) else None


def wants_fetch(msg: InboundMessage, settings: Settings) -> bool:
    """Whether `msg` carries media still to fetch, and fetching is on for its app."""
    if msg.platform is not Platform.DINGTALK or not dingtalk_media.pending(msg.meta):
        return False
    section = _section(msg, settings)
    return section is not None and section.media_max_bytes > 0


def media_dir(settings: Settings, msg: InboundMessage) -> Path:
    return settings.core.data_dir / "media" / msg.platform.value / msg.app


async def fetch(msg: InboundMessage, settings: Settings) -> InboundMessage:
    """`msg` with ``media_saved`` filled in; the same text, so the answer does not change."""
    d = _section(msg, settings)
    if d is None:
        return msg
    redis = aioredis.Redis.from_url(
        settings.core.redis_url, socket_connect_timeout=3, socket_timeout=10
    )
    saved: list[dict[str, str]] = []
    try:
        sender = wiring.sender_for(msg.platform, msg.app, settings, redis)
        if not isinstance(sender, DingTalkAdapter):
            return msg
        timeout = aiohttp.ClientTimeout(total=d.media_timeout_s + 15, connect=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            for index, item in enumerate(dingtalk_media.pending(msg.meta)):
                saved.append(await _fetch_one(http, sender, msg, index, item, settings, d))
    except KeyError:
        log.error("no DingTalk app %s here: media of %s not fetched", msg.app, msg.event_id)
    finally:
        await redis.aclose()
    meta = {**msg.meta, dingtalk_media.SAVED_META: json.dumps(saved, ensure_ascii=False)}
    return dataclasses.replace(msg, meta=meta)


async def _fetch_one(
    http: aiohttp.ClientSession,
    sender: DingTalkAdapter,
    msg: InboundMessage,
    index: int,
    item: dict[str, str],
    settings: Settings,
    d: DingTalkSettings,
) -> dict[str, str]:
    entry = {"kind": item["kind"], "name": item["name"]}
    folder = media_dir(settings, msg)
    # The name does not depend on the answer's content type, so a retry finds the file.
    dest = folder / dingtalk_media.file_name(msg.event_id, index, item, "")
    if dest.is_file():
        return {**entry, "path": str(dest), "bytes": str(dest.stat().st_size)}
    outcome = "saved"
    try:
        url = await sender.download_url(http, item["code"], msg.meta.get("robotCode", ""))
        size, content_type = await dingtalk_media.download(
            http,
            url,
            dest,
            api_base=sender.api_base,
            max_bytes=d.media_max_bytes,
            timeout_s=d.media_timeout_s,
        )
    except PayloadError as exc:
        outcome = "too_large" if isinstance(exc, dingtalk_media.MediaTooLargeError) else "refused"
        entry["error"] = outcome
        log.warning("media %d of %s not saved: %s", index, msg.event_id, exc.reason)
    except BotError as exc:
        outcome = "failed"
        entry["error"] = outcome
        log.warning("media %d of %s not fetched: %s", index, msg.event_id, exc)
    else:
        entry.update({"path": str(dest), "bytes": str(size), "content_type": content_type})
        log.info("saved media %d of %s (%d bytes)", index, msg.event_id, size)
    metrics.MEDIA_DOWNLOADS.labels(msg.platform.value, outcome).inc()
    return entry
