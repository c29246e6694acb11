"""Speech to text through DashScope's Paraformer real-time recognition (ASR_BACKEND=dashscope).

WebSocket API (https://www.alibabacloud.com/help/en/model-studio/websocket-for-paraformer-real-time-service):
connect with ``Authorization: Bearer <key>``; send ``run-task`` (task_group audio, task asr,
function recognition, the model, ``parameters.format=pcm`` and ``sample_rate=16000``); wait
for ``task-started``; send the audio as binary frames; send ``finish-task``; collect the
``result-generated`` events whose ``sentence.sentence_end`` is true until ``task-finished``.
``task-failed`` carries ``header.error_code`` and ``error_message``. The audio is the PCM of
the WAV that bot/llm/audio.py made, in 100 ms frames. One try within ASR_TIMEOUT_S, as for
the OpenAI-compatible backend; the errors map onto the same reasons (bot/llm/asr.py).
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
import wave
from typing import Any

import aiohttp

from bot.llm.asr import BUSY, MAX_TRANSCRIPT_CHARS, REFUSED, AsrError
from bot.settings.asr import AsrSettings

FRAME_BYTES = 3200  # 100 ms of 16 kHz mono 16-bit PCM
MAX_EVENT_BYTES = 256 * 1024
# task-failed codes worth trying again later; any other is a request or account to fix.
_BUSY_CODES = ("Throttling", "InternalError", "ServiceUnavailable", "Timeout", "Overloaded")


async def transcribe(http: aiohttp.ClientSession, cfg: AsrSettings, wav: bytes) -> str:
    """The text said in `wav` ("" for silence); AsrError when the service gives none."""
    pcm, rate = _pcm(wav)
    task_id = str(uuid.uuid4())
    key = cfg.api_key.get_secret_value()
    try:
        async with http.ws_connect(
            cfg.base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
            max_msg_size=MAX_EVENT_BYTES,
            autoping=True,
        ) as ws:
            return await _run(ws, cfg, task_id, pcm, rate)
    except aiohttp.WSServerHandshakeError as exc:
        reason = BUSY if exc.status == 429 or exc.status >= 500 else REFUSED
        raise AsrError(reason, f"WebSocket handshake HTTP {exc.status}") from None
    except TimeoutError:
        raise AsrError(BUSY, f"no result within {cfg.timeout_s:.0f} s") from None
    except aiohttp.ClientError as exc:
        raise AsrError(BUSY, type(exc).__name__) from None


async def _run(
    ws: aiohttp.ClientWebSocketResponse, cfg: AsrSettings, task_id: str, pcm: bytes, rate: int
) -> str:
    async with asyncio.timeout(cfg.timeout_s):
        await ws.send_json(_run_task(cfg, task_id, rate))
        await _until(ws, "task-started", {})
        for start in range(0, len(pcm), FRAME_BYTES):
            await ws.send_bytes(pcm[start : start + FRAME_BYTES])
        await ws.send_json(
            {
                "header": {"action": "finish-task", "task_id": task_id, "streaming": "duplex"},
                "payload": {"input": {}},
            }
        )
        sentences: dict[int, str] = {}
        await _until(ws, "task-finished", sentences)
    text = "".join(sentences[begin] for begin in sorted(sentences))
    return " ".join(text.split())[:MAX_TRANSCRIPT_CHARS]


def _run_task(cfg: AsrSettings, task_id: str, rate: int) -> dict[str, Any]:
    parameters: dict[str, Any] = {"format": "pcm", "sample_rate": rate}
    if cfg.language:
        parameters["language_hints"] = [cfg.language]
    return {
        "header": {"action": "run-task", "task_id": task_id, "streaming": "duplex"},
        "payload": {
            "task_group": "audio",
            "task": "asr",
            "function": "recognition",
            "model": cfg.model,
            "parameters": parameters,
            "input": {},
        },
    }


async def _until(
    ws: aiohttp.ClientWebSocketResponse, event: str, sentences: dict[int, str]
) -> None:
    """Read events until `event`; final sentences go into `sentences` by begin time."""
    async for frame in ws:
        if frame.type is not aiohttp.WSMsgType.TEXT:
            if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                break
            continue
        try:
            data = json.loads(frame.data)
        except ValueError:
            raise AsrError(REFUSED, "an event that is not JSON") from None
        header = data.get("header") if isinstance(data, dict) else None
        header = header if isinstance(header, dict) else {}
        name = header.get("event")
        if name == "task-failed":
            code = str(header.get("error_code") or "")
            said = f"{code}: {str(header.get('error_message') or '')[:200]}"
            raise AsrError(BUSY if code.startswith(_BUSY_CODES) else REFUSED, said)
        if name == "result-generated":
            _keep_sentence(data, sentences)
        if name == event:
            return
    raise AsrError(BUSY, f"connection closed before {event}")


def _keep_sentence(data: dict[str, Any], sentences: dict[int, str]) -> None:
    payload = data.get("payload")
    output = payload.get("output") if isinstance(payload, dict) else None
    sentence = output.get("sentence") if isinstance(output, dict) else None
    if not isinstance(sentence, dict) or sentence.get("heartbeat"):
        return
    text = sentence.get("text")
    if sentence.get("sentence_end") and isinstance(text, str):
        begin = sentence.get("begin_time")
        sentences[begin if isinstance(begin, int) else len(sentences)] = text


def _pcm(wav: bytes) -> tuple[bytes, int]:
    """The PCM frames and sample rate of a WAV made by bot/llm/audio.py."""
    with wave.open(io.BytesIO(wav)) as reader:
        return reader.readframes(reader.getnframes()), reader.getframerate()
