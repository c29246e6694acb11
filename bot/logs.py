"""Logging set-up, called once per process (`bot serve`, `bot worker`, Celery's signal)."""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
# Control characters (a "%0a" in a URL, a NUL in a header) would let a caller forge log
# lines or cut one short: every one of them is written as an escape.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


class OneLineFormatter(logging.Formatter):
    """A record is one line: control characters in its message are escaped.

    Only the message: a traceback that follows it keeps its lines.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_ESCAPES)
        return super().formatMessage(record)


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr in one line per record; quiet chatty third-party loggers."""
    root = logging.getLogger()
    if not any(getattr(h, "_bot_handler", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(OneLineFormatter(_FORMAT))
        handler._bot_handler = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("jieba", "httpx", "httpx2", "openai", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The DashScope SDK logs a full traceback per failed request; the router logs one line.
    logging.getLogger("dashscope").setLevel(logging.CRITICAL)
