"""Files customers send in chat, read as text for the conversation (FILES_*)."""

from __future__ import annotations

from pydantic import Field

from bot.settings.base import Section, env_config


class FilesSettings(Section):
    """PDF, DOCX, XLSX and text files sent in chat (bot/pipeline/files.py): how much of one
    is read, how long the parser may take, how long its text stays with the conversation.

    The download itself is capped per platform (`<PLATFORM>_MEDIA_MAX_BYTES`, `…_TIMEOUT_S`).
    """

    model_config = env_config("FILES_")

    # Off: files get the polite "please describe it in words" answer, as before.
    active: bool = Field(default=True, validation_alias="FILES_ENABLED")
    max_pages: int = Field(default=20, ge=1, le=500)  # PDF pages read
    max_chars: int = Field(default=12_000, ge=500, le=200_000)  # text given to the model
    max_rows: int = Field(default=1_000, ge=10, le=100_000)  # XLSX rows read, all sheets
    # The parser runs in a child process, killed past this time or memory.
    parse_timeout_s: float = Field(default=20.0, gt=0, le=300)
    parse_memory_mb: int = Field(default=1024, ge=128)
    # A DOCX/XLSX (a ZIP) that unpacks to more than this is refused unread.
    max_unzipped_mb: int = Field(default=100, ge=1)
    # How long a file stays part of its conversation: a question in that time is asked with it.
    memory_s: int = Field(default=1800, ge=0, le=86400)
    # A scanned PDF (no text layer): this many first pages go to the vision model as pictures
    # (VLLM_VISION=true); without one the customer is told the file is a scan.
    scan_pages: int = Field(default=3, ge=0, le=10)
