"""What the bot did for one answer, kept for the people who check it (the console's transcript).

The passages the knowledge search ranked (with their scores), each tool call with its
arguments and result, and the model time: small, bounded copies (long texts are cut), so a
trace costs a few kilobytes at most. `outcome_of` names what kind of answer it was, the
label the conversation filters and the dashboard count by.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bot.agent.toolloop import LoopResult
from bot.llm.base import ChatMessage
from knowledge.base import Hit

HIT_TEXT_MAX = 300
ARGUMENTS_MAX = 500
RESULT_MAX = 1000

# Answer kinds (TurnRecord.outcome).
FAQ = "faq"  # an FAQ entry's written answer, no model
MODEL = "model"  # a model's answer
KNOWLEDGE = "knowledge"  # the best passage, said without a model
ORDERS = "orders"  # the order backend, without a model
RULE = "rule"  # an auto-reply rule
HANDOFF = "handoff"  # handed to a person
DECLINED = "declined"  # "cannot answer this, a person will follow up"
OTHER = "other"  # welcome, reset, rate-limit notice
OUTCOMES = (FAQ, MODEL, KNOWLEDGE, ORDERS, RULE, HANDOFF, DECLINED, OTHER)


@dataclass(frozen=True, slots=True)
class TracedHit:
    source: str
    section: str
    score: float
    text: str
    faq: bool


@dataclass(frozen=True, slots=True)
class TracedTool:
    name: str
    arguments: str
    ok: bool
    error: str
    result: str
    ms: int


@dataclass(frozen=True, slots=True)
class Trace:
    """Retrieved passages, tool calls and model time of one answer."""

    hits: tuple[TracedHit, ...] = ()
    tools: tuple[TracedTool, ...] = ()
    model_ms: int = 0
    steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Trace:
        if not data:
            return cls()
        return cls(
            hits=tuple(TracedHit(**h) for h in data.get("hits", [])),
            tools=tuple(TracedTool(**t) for t in data.get("tools", [])),
            model_ms=int(data.get("model_ms", 0)),
            steps=int(data.get("steps", 0)),
        )


def of_hits(hits: Sequence[Hit]) -> tuple[TracedHit, ...]:
    return tuple(
        TracedHit(
            h.source, h.section, round(h.score, 4), _cut(h.text, HIT_TEXT_MAX), h.answer is not None
        )
        for h in hits
    )


def of_loop(hits: Sequence[Hit], result: LoopResult | None) -> Trace:
    """The trace of a turn that went through the tool loop (`result` None: no model)."""
    if result is None:
        return Trace(hits=of_hits(hits))
    calls = _calls(result.messages)
    tools: list[TracedTool] = []
    for step in result.steps:
        for t in step.tools:
            arguments, output = calls.pop(0) if calls else ("", "")
            tools.append(TracedTool(t.name, arguments, t.ok, t.error, output, _ms(t.duration_s)))
    return Trace(
        hits=of_hits(hits),
        tools=tuple(tools),
        model_ms=sum(_ms(s.model_s) for s in result.steps),
        steps=len(result.steps),
    )


def _calls(messages: Sequence[ChatMessage]) -> list[tuple[str, str]]:
    """(arguments, result) of each tool call, in the order they were made."""
    results = {
        str(m.get("tool_call_id", "")): str(m.get("content") or "")
        for m in messages
        if m.get("role") == "tool"
    }
    calls: list[tuple[str, str]] = []
    for m in messages:
        for call in m.get("tool_calls") or [] if m.get("role") == "assistant" else []:
            fn = call.get("function", {}) if isinstance(call, dict) else {}
            calls.append(
                (
                    _cut(str(fn.get("arguments", "")), ARGUMENTS_MAX),
                    _cut(results.get(str(call.get("id", "")), ""), RESULT_MAX),
                )
            )
    return calls


def outcome_of(answer_outcome: str, backend: str, degraded: bool, handoff_reason: str) -> str:
    """What kind of answer it was (see OUTCOMES): a handoff wins over what was said; then
    the kind the agent named; else a guess from the backend for answers made elsewhere."""
    if handoff_reason:
        return HANDOFF
    if answer_outcome:
        return answer_outcome
    if backend in (FAQ, RULE, ORDERS):
        return backend
    return DECLINED if degraded else OTHER


def dumps(trace: Trace) -> str:
    return json.dumps(trace.to_dict(), ensure_ascii=False, separators=(",", ":"))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
