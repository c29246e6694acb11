"""Speech to text by the configured backend (ASR_BACKEND): an OpenAI-compatible
``/v1/audio/transcriptions`` server (bot/llm/asr.py) or DashScope Paraformer
(bot/llm/paraformer.py). Both take the WAV of bot/llm/audio.py and raise `asr.AsrError`."""

from __future__ import annotations

import aiohttp

from bot.llm import asr, paraformer
from bot.settings.asr import AsrSettings


async def transcribe(http: aiohttp.ClientSession, cfg: AsrSettings, wav: bytes) -> str:
    """The text said in `wav` ("" for silence); `asr.AsrError` when the backend gives none."""
    if cfg.backend == "dashscope":
        return await paraformer.transcribe(http, cfg, wav)
    return await asr.transcribe(http, cfg, wav)


def where(cfg: AsrSettings) -> str:
    """The address the backend is asked at, for logs and `bot doctor`."""
    return cfg.base_url if cfg.backend == "dashscope" else asr.endpoint(cfg)
