"""`bot doctor` for speech recognition (ASR_*): ffmpeg on this host, and the server answering
a transcription of a short generated WAV (silence: no speech is needed to prove the route,
the model name and the key)."""

from __future__ import annotations

import io
import wave

import aiohttp

from bot.doctor.models import TIMEOUT_S
from bot.doctor.result import Result, fail, ok, skip
from bot.llm import asr, speech
from bot.pipeline import voice
from bot.settings import Settings

NAME = "speech recognition"


async def check_speech(settings: Settings) -> Result:
    cfg = settings.asr
    if not cfg.enabled:
        return skip(NAME, "ASR_BASE_URL / ASR_MODEL not set: only the platforms' own transcripts")
    problem = voice.decoder_problem(settings)
    if problem:
        return fail(
            NAME,
            problem,
            "在本机安装 ffmpeg（apt-get install ffmpeg；Docker 镜像已自带）",
            "install ffmpeg on this host (apt-get install ffmpeg; the Docker image has it)",
        )
    # Within the doctor's few seconds, like the model checks (the run must end in about 10 s).
    cfg = cfg.model_copy(update={"timeout_s": min(cfg.timeout_s, TIMEOUT_S)})
    try:
        async with aiohttp.ClientSession() as http:
            await speech.transcribe(http, cfg, _silence())
    except asr.AsrError as exc:
        if exc.reason == asr.REFUSED:
            return fail(
                NAME,
                f"{speech.where(cfg)} refused a transcription: {exc.detail}",
                "核对 ASR_MODEL 与 ASR_API_KEY（模型名须与服务端一致）",
                "check ASR_MODEL and ASR_API_KEY (the model name as the server knows it)",
            )
        return fail(
            NAME,
            f"no transcription from {speech.where(cfg)}: {exc.detail}",
            "确认语音识别服务已启动，且本机能访问 ASR_BASE_URL",
            "check the speech recognition server is running and this host reaches ASR_BASE_URL",
        )
    return ok(NAME, f"{speech.where(cfg)} transcribed a WAV; ffmpeg found")


def _silence(seconds: float = 0.5) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16_000)
        wav.writeframes(b"\0\0" * int(16_000 * seconds))
    return out.getvalue()
