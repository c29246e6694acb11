"""Pure helpers for the flat fields of WeChat-family callbacks (WeCom, 微信客服, MP)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from bot.domain import Platform
from bot.errors import PayloadError

# Seconds since 1970; the digit bound keeps fromtimestamp from overflowing.
_MAX_SECONDS_DIGITS = 11


def require(platform: Platform, fields: Mapping[str, str], *names: str) -> list[str]:
    """The values of `names`, in order; PayloadError naming every one that is missing."""
    missing = [name for name in names if not fields.get(name)]
    if missing:
        raise PayloadError(f"missing {', '.join(missing)}", platform)
    return [fields[name] for name in names]


def sent_at(platform: Platform, seconds: int | str, what: str = "CreateTime") -> datetime:
    """A callback's seconds timestamp as an aware datetime; PayloadError when it is not one."""
    text = str(seconds)
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_SECONDS_DIGITS:
        raise PayloadError(f"{what} is not a timestamp", platform)
    return datetime.fromtimestamp(int(text), UTC)
