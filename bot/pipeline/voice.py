"""Voice messages the platform did not transcribe, turned into the turn's text.

Run by the worker after the media are fetched (bot/pipeline/media.py), only with ASR_BASE_URL
and ASR_MODEL set. The saved recording is decoded to 16 kHz mono WAV (bot/llm/audio.py: ffmpeg
in a subprocess, SILK in a thread, both time-limited) and sent to the speech recognition
server (bot/llm/speech.py: OpenAI-compatible or DashScope Paraformer). The transcript becomes
the message's text, no longer a placeholder: the model answers what was said, keyword rules
match it, and the conversation stores it marked as voice (bot/db/records.py) for the person
who takes over. A message that cannot be transcribed keeps its placeholder and its attachment
says why (too long, corrupt, the server busy…), so the polite answer says so (`reply`). The
transcript is kept beside the recording, so a retried job does not ask twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

from bot import metrics
from bot.db import usage
from bot.domain import Attachment, Content, InboundMessage
from bot.llm import asr, audio, speech
from bot.pipeline import media, slots
from bot.runtime import Runtime
from bot.settings import Settings

log = logging.getLogger(__name__)

EMPTY = "empty"  # decoded and recognised, but nothing was said
_SUFFIX = ".transcript.txt"

# What the customer is told when their voice could not be transcribed (Attachment.error).
NOT_HEARD = "抱歉，没有听清您说的话，请再说一遍，或用文字描述您的问题。"
UNPLAYABLE = "抱歉，这条语音没能播放，请重新录制后发送，或用文字描述您的问题。"
NOT_NOW = "抱歉，语音暂时没能识别，请稍后再发一次，或用文字描述您的问题。"
TOO_LARGE = "抱歉，这条语音太大了，请发送短一些的语音，或用文字描述您的问题。"


def too_long(max_seconds: float) -> str:
    return (
        f"抱歉，这条语音太长了（超过 {max_seconds:.0f} 秒），"
        "请分成几段短语音发送，或用文字描述您的问题。"
    )


def decoder_problem(settings: Settings) -> str:
    """What stops voice from being transcribed on this host ("" when nothing does); said by
    the worker at start and by `bot doctor`."""
    if settings.asr.enabled and audio.ffmpeg_path() is None:
        return (
            "ASR_BASE_URL is set but ffmpeg is not installed: voice messages (AMR, Opus) "
            "get the polite text until it is (apt-get install ffmpeg)"
        )
    return ""


def reply(msg: InboundMessage, settings: Settings) -> str | None:
    """The polite answer to a voice message that was not transcribed; None: the general one
    (speech recognition is off, or the bot has no decoder for it)."""
    if not settings.asr.enabled:
        return None
    error = next((a.error for a in msg.attachments if a.kind is Content.VOICE and a.error), "")
    if error == audio.TOO_LONG:
        return too_long(settings.asr.max_seconds)
    if error == "too_large":  # over the app's media cap (bot/pipeline/media.py)
        return TOO_LARGE
    if error in (audio.CORRUPT, audio.NOT_AUDIO):
        return UNPLAYABLE
    if error == EMPTY:
        return NOT_HEARD
    if error in (asr.BUSY, asr.REFUSED, "failed", "refused"):
        return NOT_NOW
    return None


async def transcribe(msg: InboundMessage, rt: Runtime) -> InboundMessage:
    """`msg` with its recording's transcript as its text, or with why not (see module)."""
    cfg = rt.settings.asr
    if not cfg.enabled or msg.content is not Content.VOICE or not msg.placeholder:
        return msg
    index = next((i for i, a in enumerate(msg.attachments) if a.kind is Content.VOICE), None)
    if index is None:
        return msg
    item = msg.attachments[index]
    if item.error or not item.path:
        return msg  # not fetched: the answer says why (`reply`)
    text, error = await _text(msg, rt, Path(item.path))
    if error:
        done = dataclasses.replace(item, error=error)
        return dataclasses.replace(msg, attachments=_with(msg, index, done))
    return dataclasses.replace(msg, text=text, placeholder=False)


async def _text(msg: InboundMessage, rt: Runtime, source: Path) -> tuple[str, str]:
    """(transcript, "") or ("", why not)."""
    cfg = rt.settings.asr
    platform = msg.platform.value
    kept = source.with_name(source.name + _SUFFIX)
    cached = await asyncio.to_thread(_read, kept)
    if cached is not None:
        return cached, ""
    try:
        decoded = await decode(source, rt.settings)
    except slots.SlotsBusyError as exc:
        log.warning("voice %s of %s not decoded: %s", source.name, msg.event_id, exc)
        metrics.VOICE_TRANSCRIPTIONS.labels(platform, asr.BUSY).inc()
        return "", asr.BUSY
    except audio.AudioError as exc:
        log.warning("voice %s of %s not transcribed: %s", source.name, msg.event_id, exc)
        metrics.VOICE_TRANSCRIPTIONS.labels(platform, exc.reason).inc()
        return "", exc.reason
    except OSError as exc:  # swept meanwhile, or unreadable
        log.warning("voice %s unreadable: %s", source.name, type(exc).__name__)
        metrics.VOICE_TRANSCRIPTIONS.labels(platform, audio.CORRUPT).inc()
        return "", audio.CORRUPT
    try:
        text = await speech.transcribe(rt.http, cfg, decoded.wav)
    except asr.AsrError as exc:
        level = logging.ERROR if exc.reason == asr.REFUSED else logging.WARNING
        log.log(level, "speech recognition failed for %s: %s", msg.event_id, exc)
        metrics.VOICE_TRANSCRIPTIONS.labels(platform, exc.reason).inc()
        return "", exc.reason
    metrics.VOICE_SECONDS.labels(platform).inc(decoded.seconds)
    await media.count(rt, msg, usage.AUDIO, decoded.seconds)
    outcome = "transcribed" if text else EMPTY
    metrics.VOICE_TRANSCRIPTIONS.labels(platform, outcome).inc()
    log.info(
        "voice of %s transcribed: %s, %.1f s, %d chars",
        msg.event_id,
        decoded.source_format,
        decoded.seconds,
        len(text),
    )
    if not text:
        return "", EMPTY
    await asyncio.to_thread(_write, kept, text)
    return text, ""


async def decode(source: Path, settings: Settings) -> audio.Decoded:
    """The recording at `source` as WAV, decoded in one of this process's decoder slots.

    Raises SlotsBusyError when none is free within BOT_DECODE_WAIT_S, AudioError when the
    recording cannot be decoded.
    """
    cfg = settings.asr
    async with slots.decoders(settings).hold(settings.core.decode_wait_s):
        return await audio.to_wav(
            source, max_seconds=cfg.max_seconds, timeout_s=cfg.decode_timeout_s
        )


def _with(msg: InboundMessage, index: int, item: Attachment) -> tuple[Attachment, ...]:
    items = list(msg.attachments)
    items[index] = item
    return tuple(items)


def _read(path: Path) -> str | None:
    try:
        return path.read_text("utf-8").strip() or None
    except OSError:
        return None


def _write(path: Path, text: str) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(text, "utf-8")
    part.replace(path)
