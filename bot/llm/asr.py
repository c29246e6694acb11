"""Speech to text through an OpenAI-compatible ``/v1/audio/transcriptions`` endpoint.

API: https://platform.openai.com/docs/api-reference/audio/createTranscription ; vLLM serves
the same route for Whisper-family models
(https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html#transcriptions-api).
The request is multipart/form-data: ``file`` (the WAV from bot/llm/audio.py), ``model``,
``language`` (optional) and ``response_format=json``; the answer is ``{"text": "..."}``.
One try per message, within ASR_TIMEOUT_S: the customer is waiting, and a failure gets a
polite answer asking to try again or type (bot/pipeline/voice.py).
"""

from __future__ import annotations

import json
import logging

import aiohttp

from bot.settings.asr import AsrSettings

log = logging.getLogger(__name__)

# Why a transcription failed, as attachments record them (`Attachment.error`).
BUSY = "asr_busy"  # 429, 5xx, a timeout or no connection: worth trying again later
REFUSED = "asr_refused"  # another 4xx or an answer without text: a configuration to fix
MAX_ANSWER_BYTES = 256 * 1024  # a transcript is short; never read a large body whole
MAX_TRANSCRIPT_CHARS = 2000


class AsrError(Exception):
    """A transcription that did not happen; `reason` is BUSY or REFUSED."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def endpoint(cfg: AsrSettings) -> str:
    return cfg.base_url.rstrip("/") + "/audio/transcriptions"


async def transcribe(http: aiohttp.ClientSession, cfg: AsrSettings, wav: bytes) -> str:
    """The text said in `wav` ("" for silence); AsrError when the server gives none."""
    form = aiohttp.FormData()
    form.add_field("file", wav, filename="voice.wav", content_type="audio/wav")
    form.add_field("model", cfg.model)
    if cfg.language:
        form.add_field("language", cfg.language)
    form.add_field("response_format", "json")
    key = cfg.api_key.get_secret_value() or "EMPTY"  # vLLM ignores it; some proxies need one
    try:
        async with http.post(
            endpoint(cfg),
            data=form,
            headers={"Authorization": f"Bearer {key}"},
            timeout=aiohttp.ClientTimeout(total=cfg.timeout_s),
        ) as resp:
            raw = await _body(resp)
            status = resp.status
    except TimeoutError:
        raise AsrError(BUSY, f"no answer within {cfg.timeout_s:.0f} s") from None
    except aiohttp.ClientError as exc:
        raise AsrError(BUSY, type(exc).__name__) from None
    if status == 429 or status >= 500:
        raise AsrError(BUSY, f"HTTP {status}")
    if status != 200:
        raise AsrError(REFUSED, f"HTTP {status}: {_said(raw)}")
    try:
        data = json.loads(raw)
    except ValueError:
        raise AsrError(REFUSED, "answer is not JSON") from None
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str):
        raise AsrError(REFUSED, "answer has no text")
    return " ".join(text.split())[:MAX_TRANSCRIPT_CHARS]


async def _body(resp: aiohttp.ClientResponse) -> bytes:
    """The whole answer (it may come in several chunks), at most MAX_ANSWER_BYTES."""
    body = bytearray()
    async for chunk in resp.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise AsrError(REFUSED, f"answer over {MAX_ANSWER_BYTES} bytes")
    return bytes(body)


def _said(raw: bytes) -> str:
    """The server's error message, short (OpenAI: {"error": {"message": ...}})."""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw[:200].decode("utf-8", "replace")
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return str(message or data)[:200]
