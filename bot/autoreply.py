"""Keyword auto-reply rules, evaluated before the agent (issue 3; filled in by its slice)."""

from __future__ import annotations

from bot.domain import InboundMessage
from bot.settings import Settings


async def find_reply(msg: InboundMessage, settings: Settings) -> str | None:
    """The fixed reply of the first rule that matches `msg`, or None to ask the agent."""
    del msg, settings
    return None
