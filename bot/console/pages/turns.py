"""What the bot did for each answer of a conversation, as the transcript shows it.

Order tools' arguments and results are customer data: only the roles that serve customers
(admin, agent) see them; an editor sees that the tool ran and how it went.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.agent.trace import Trace
from bot.console.accounts import ADMIN, AGENT
from bot.db import turns
from bot.tools.orders import ORDER_TOOLS

MASK = "•••"


def for_conversation(engine: Engine, conv_id: int, role: str) -> dict[int, dict[str, Any]]:
    """Per outbound message id: outcome, backend, latency, tokens, confidence and trace."""
    with Session(engine) as session:
        views = turns.for_conversation(session, conv_id)
    shown: dict[int, dict[str, Any]] = {}
    for message_id, view in views.items():
        trace = Trace.from_dict(view.trace)
        if role not in (ADMIN, AGENT):
            trace = _masked(trace)
        shown[message_id] = {
            "outcome": view.outcome,
            "backend": view.backend,
            "confidence": view.confidence,
            "latency_ms": view.latency_ms,
            "tokens": view.prompt_tokens + view.completion_tokens,
            "trace": trace,
        }
    return shown


def _masked(trace: Trace) -> Trace:
    tools = tuple(
        replace(t, arguments=MASK, result=MASK) if t.name in ORDER_TOOLS else t for t in trace.tools
    )
    return replace(trace, tools=tools)
