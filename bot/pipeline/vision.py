"""Pictures a customer sent, made ready for a vision model, and kept with the conversation.

Run by the worker after the media are fetched (bot/pipeline/media.py), only with a vision
model (VLLM_VISION=true, or DASHSCOPE_VISION_MODEL). Each saved picture is checked and
downscaled (bot/llm/images.py) into a JPEG beside the original, in a thread and in one of the
process's decoder slots (BOT_DECODE_CONCURRENCY, bot/pipeline/slots.py, shared with ffmpeg
and the file parsers: a burst of photos is CPU work too); the message's attachments
then point at those JPEGs, and the agent shows them to the model. A picture on its own
stops being a placeholder: the model answers it. A picture that cannot be shown keeps the
placeholder, and its attachment says why (too large, corrupt, not a picture), so the polite
answer says so (bot/pipeline/autoreply.py). The latest pictures stay part of the
conversation for VLLM_IMAGE_MEMORY_S: a text question in that time is asked with them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from pathlib import Path

from bot import keys
from bot.db import usage
from bot.domain import Attachment, Content, InboundMessage
from bot.llm import images
from bot.pipeline import media, slots
from bot.runtime import Runtime
from bot.settings import Settings

log = logging.getLogger(__name__)

MAX_PICTURES = 4  # at most this many pictures go with one question
_SUFFIX = ".vision.jpg"


def pictures(msg: InboundMessage) -> list[Attachment]:
    """The pictures of `msg` ready to show (saved and prepared, without an error)."""
    return [a for a in msg.attachments if _ready(a)]


async def prepare(msg: InboundMessage, rt: Runtime) -> InboundMessage:
    """`msg` with its pictures prepared, or with the conversation's recent ones (see module)."""
    # VLLM_IMAGE_MAX_SIDE and VLLM_IMAGE_MEMORY_S hold for every vision backend.
    cfg = rt.settings.vllm
    if not rt.settings.sees_images:
        return msg
    done = [await _prepared(a, rt.settings) for a in msg.attachments]
    msg = dataclasses.replace(msg, attachments=tuple(done))
    fresh = pictures(msg)[:MAX_PICTURES]
    key = keys.pictures(msg.conversation_key)
    if fresh:
        await media.count(rt, msg, usage.IMAGE, len(fresh))
        if cfg.image_memory_s > 0:
            listed = json.dumps([a.to_json() for a in fresh])
            await rt.redis.set(key, listed, ex=cfg.image_memory_s)
        # A picture on its own is a question now: the model sees it.
        return dataclasses.replace(msg, placeholder=False)
    if msg.placeholder or not msg.question:
        return msg
    # Files may have been cleared since: only those still there go along.
    remembered = await _remembered(rt, key)
    earlier = await asyncio.to_thread(lambda: [a for a in remembered if Path(a.path).is_file()])
    if earlier:
        log.info("%s %s %s asked with %d earlier picture(s)", *_ids(msg), len(earlier))
        return dataclasses.replace(msg, attachments=(*msg.attachments, *earlier))
    return msg


def _ready(item: Attachment) -> bool:
    return item.kind is Content.IMAGE and bool(item.path) and not item.error and _is_prepared(item)


def _is_prepared(item: Attachment) -> bool:
    return item.path.endswith(_SUFFIX)


async def _prepared(item: Attachment, settings: Settings) -> Attachment:
    if item.kind is not Content.IMAGE or not item.path or item.error or _is_prepared(item):
        return item
    source = Path(item.path)
    try:
        dest, size = await downscale(source, settings)
    except slots.SlotsBusyError as exc:
        log.warning("picture %s not prepared: %s", source.name, exc)
        return dataclasses.replace(item, error=images.BUSY)
    except images.ImageError as exc:
        log.warning("picture %s not shown to the model: %s", source.name, exc)
        return dataclasses.replace(item, error=exc.reason)
    except OSError as exc:
        log.warning("picture %s unreadable: %s", source.name, type(exc).__name__)
        return dataclasses.replace(item, error="failed")
    return dataclasses.replace(item, path=str(dest), size=size)


async def downscale(source: Path, settings: Settings) -> tuple[Path, int]:
    """The JPEG for the model made from `source` (beside it) and its size: in a thread, in one
    of this process's decoder slots; SlotsBusyError when none is free within BOT_DECODE_WAIT_S.
    """
    max_side = settings.vllm.image_max_side
    async with slots.decoders(settings).hold(settings.core.decode_wait_s):
        work = asyncio.ensure_future(asyncio.to_thread(_convert, source, max_side))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            # A thread cannot be stopped: the slot stays taken until Pillow is done with it.
            await asyncio.wait({work})
            raise


def _convert(source: Path, max_side: int) -> tuple[Path, int]:
    """The JPEG made from `source` beside it (made once: a retried job finds it), its size."""
    dest = source.with_name(source.name + _SUFFIX)
    if not dest.is_file():
        jpeg = images.downscale(source.read_bytes(), max_side=max_side)
        part = dest.with_name(dest.name + ".part")
        part.write_bytes(jpeg)
        part.replace(dest)
    return dest, dest.stat().st_size


async def _remembered(rt: Runtime, key: str) -> list[Attachment]:
    raw = await rt.redis.get(key)
    if not raw:
        return []
    try:
        items = json.loads(raw)
    except ValueError:
        return []
    found = [Attachment.from_json(a) for a in items if isinstance(a, dict)]
    return [a for a in found if _ready(a)][:MAX_PICTURES]


def _ids(msg: InboundMessage) -> tuple[str, str, str]:
    return (msg.platform.value, msg.app, msg.event_id)
