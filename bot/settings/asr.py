"""Speech recognition for voice messages the platform did not transcribe (ASR_*).

ASR_BACKEND=openai (the default): an OpenAI-compatible ``/v1/audio/transcriptions`` endpoint
(vLLM serving a Whisper-family model, or any server speaking the same multipart API),
bot/llm/asr.py. ASR_BACKEND=dashscope: DashScope's Paraformer real-time recognition over its
WebSocket API, bot/llm/paraformer.py. Audio is decoded with ffmpeg (bot/llm/audio.py); without
it voice gets the polite text and `bot doctor` says why.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from bot.errors import ConfigError
from bot.settings.base import Section, env_config

# DashScope's WebSocket endpoint (the Beijing region; the international one is
# wss://dashscope-intl.aliyuncs.com/api-ws/v1/inference).
DASHSCOPE_WS_URL = "wss://dashscope.aliyuncs.com/api-ws/v1/inference"


class AsrSettings(Section):
    """Where voice is transcribed; off unless ASR_BASE_URL and ASR_MODEL are set."""

    model_config = env_config("ASR_")
    REQUIRED = ("base_url", "model")

    backend: Literal["openai", "dashscope"] = "openai"
    # openai: ends in /v1, like VLLM_BASE_URL (e.g. http://whisper:8000/v1); dashscope: the
    # WebSocket URL (DASHSCOPE_WS_URL).
    base_url: str = ""
    model: str = ""  # e.g. openai/whisper-large-v3-turbo as the server names it
    api_key: SecretStr = SecretStr("")
    # A hint for the model (ISO-639-1); empty: the model detects the language.
    language: str = Field(default="zh", max_length=8)
    timeout_s: float = Field(default=20.0, gt=0, le=300)
    # Longer voice messages get a clear answer instead of a transcript (WeChat's own cap is 60 s).
    max_seconds: float = Field(default=60.0, ge=1, le=600)
    # ffmpeg (or the SILK decoder) gets this long for one message.
    decode_timeout_s: float = Field(default=10.0, gt=0, le=120)

    def check(self) -> None:
        super().check()
        if not self.enabled:
            return
        scheme = self.base_url.split("://", 1)[0].lower()
        if self.backend == "dashscope":
            if scheme not in ("wss", "ws"):
                raise ConfigError(
                    f"ASR_BACKEND=dashscope needs a WebSocket ASR_BASE_URL ({DASHSCOPE_WS_URL})"
                )
            if not self.api_key.get_secret_value():
                raise ConfigError("ASR_BACKEND=dashscope needs ASR_API_KEY (a DashScope API key)")
        elif scheme not in ("http", "https"):
            raise ConfigError(
                "ASR_BASE_URL must be an http(s) URL ending in /v1 (e.g. http://whisper:8000/v1)"
            )
