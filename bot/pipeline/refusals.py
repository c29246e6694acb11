"""Platform API errors the operator can fix: counted by errcode, explained in the log line.

The table is adapters/errcodes.py; the count is `bot_platform_errors_total{platform,errcode}`
(known codes by name, `other` for the rest). Called where the worker catches a platform's
error: a refused send (bot/pipeline/turn.py) and a job's failure (bot/pipeline/jobs.py).
"""

from __future__ import annotations

from adapters import errcodes
from bot import metrics
from bot.errors import PlatformRejectedError, PlatformUnavailableError

OTHER = "other"


def observe(exc: BaseException) -> str:
    """Count a platform error that carries an errcode; the explanation to append to its log
    line ("" when the code is not in the table, or the error has none)."""
    if not isinstance(exc, PlatformRejectedError | PlatformUnavailableError):
        return ""
    if exc.errcode is None or exc.errcode == "":
        return ""
    platform = str(exc.platform) or "unknown"
    known = errcodes.explain(platform, exc.errcode)
    metrics.PLATFORM_ERRORS.labels(platform, known.code if known else OTHER).inc()
    return f"; {known.line()}" if known else ""
