"""Speech recognition for voice messages the platform did not transcribe (ASR_*).

An OpenAI-compatible ``/v1/audio/transcriptions`` endpoint (vLLM serving a Whisper-family
model, or any server speaking the same multipart API): bot/llm/asr.py. Audio is decoded with
ffmpeg (bot/llm/audio.py); without it voice gets the polite text and `bot doctor` says why.
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from bot.settings.base import Section, env_config


class AsrSettings(Section):
    """Where voice is transcribed; off unless ASR_BASE_URL and ASR_MODEL are set."""

    model_config = env_config("ASR_")
    REQUIRED = ("base_url", "model")

    # Ends in /v1, like VLLM_BASE_URL (e.g. http://whisper:8000/v1).
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
