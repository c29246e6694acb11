"""The tool-calling loop: ask the model with tools, run the calls it makes, repeat, answer.

One turn is at most `max_steps` tool steps. A step whose answer has tool calls runs them
all concurrently through `ToolRegistry.run` (each under its own timeout, each producing a
result the model can read), appends the assistant message echoing the calls and one `tool`
message per call, in call order, and asks again. A step that answers with text ends the
turn. When the steps are used up, one last call without tools asks for the answer.

The model client is the router, so a step that fails on vLLM continues on DashScope with
the same messages. When no model answers at all, the result says so (`answered` False) and
still carries the tokens already spent and the trace: the caller degrades. Each turn counts
in `bot_agent_turns_total{outcome}` and `bot_agent_tool_steps`; `LoopResult.summary()` is
its log line (steps, backends, tools with outcome and duration, tokens).

Streaming: every step is streamed, because only the end of a step tells whether it was the
final answer. Text a model says before its tool calls ("我帮您查一下") has then already been
shown, so it is kept in the answer, which stays equal to the stream. Without streaming the
customer never saw it, and it is dropped. While a step's tools run, the stream shows their
status line ("正在查询订单…", `Tool.status`) after that text; the next step's first words
take it away again (`STREAM_RESTART` and the text shown so far), so it is never part of the
answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.domain import STREAM_RESTART
from bot.errors import LLMRejectedError, LLMUnavailableError
from bot.llm.base import ChatMessage, Completion, LLMClient, OnDelta, ToolCall
from bot.metrics import AGENT_TOOL_STEPS, AGENT_TURNS
from bot.tools.registry import ToolContext, ToolRegistry, ToolResult

log = logging.getLogger(__name__)

DEFAULT_MAX_STEPS = 4
# Said (as a system message) before the last call when the tool steps are used up.
FINAL_ANSWER_NOTE = (
    "工具调用次数已用完。请不要再调用工具，直接根据以上对话和工具结果回答客户；"
    "信息不足时，请说明情况并告知客户会有人工客服跟进。"
)


@dataclass(frozen=True, slots=True)
class ToolTrace:
    """One call of a step: which tool, whether it succeeded (else the error kind), how long."""

    name: str
    ok: bool
    error: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class StepTrace:
    """One model call and the tool calls it asked for."""

    backend: str
    model_s: float
    tools_s: float
    prompt_tokens: int
    completion_tokens: int
    tools: tuple[ToolTrace, ...] = ()


@dataclass(slots=True)
class LoopResult:
    """What a turn of the loop produced; `answered` False means no model gave an answer."""

    text: str = ""
    backend: str = ""
    answered: bool = False
    capped: bool = False  # the tool steps ran out and the last call answered without tools
    prompt_tokens: int = 0
    completion_tokens: int = 0
    steps: list[StepTrace] = field(default_factory=list)
    messages: list[ChatMessage] = field(default_factory=list)  # the whole exchange, for audit

    @property
    def tool_calls(self) -> int:
        return sum(len(s.tools) for s in self.steps)

    def summary(self) -> str:
        """One log line: steps, tools and outcomes, model vs tool time."""
        parts = []
        for i, step in enumerate(self.steps, 1):
            calls = ",".join(
                f"{t.name}:{'ok' if t.ok else t.error}:{t.duration_s * 1000:.0f}ms"
                for t in step.tools
            )
            parts.append(f"{i}:{step.backend}:{step.model_s * 1000:.0f}ms[{calls}]")
        state = "answered" if self.answered else "failed"
        return (
            f"tool loop {state}{' (capped)' if self.capped else ''} in {len(self.steps)} steps, "
            f"{self.tool_calls} tool calls, {self.prompt_tokens}+{self.completion_tokens} tokens: "
            + " ".join(parts)
        )


async def run_loop(
    llm: LLMClient,
    messages: Sequence[ChatMessage],
    registry: ToolRegistry,
    ctx: ToolContext,
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
    timeout_s: float = 60.0,
    on_delta: OnDelta | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> LoopResult:
    """Run one turn: at most `max_steps` tool steps, then an answer; never raises for models."""
    result = await _loop(llm, messages, registry, ctx, max_steps, timeout_s, on_delta, clock)
    outcome = "capped" if result.capped else "answered" if result.answered else "failed"
    AGENT_TURNS.labels(outcome).inc()
    AGENT_TOOL_STEPS.observe(sum(1 for s in result.steps if s.tools))
    return result


async def _loop(
    llm: LLMClient,
    messages: Sequence[ChatMessage],
    registry: ToolRegistry,
    ctx: ToolContext,
    max_steps: int,
    timeout_s: float,
    on_delta: OnDelta | None,
    clock: Callable[[], float],
) -> LoopResult:
    deadline = clock() + timeout_s
    convo: list[ChatMessage] = list(messages)
    result = LoopResult(messages=convo)
    shown: list[str] = []  # text already streamed by tool steps (kept in the answer)
    tools = registry.specs() if len(registry) else None
    line = _StatusLine(on_delta)
    for step in range(max_steps + 1):
        last = step == max_steps or tools is None
        if last and tools is not None:
            _note_in_system_prompt(convo, FINAL_ANSWER_NOTE)
        streamed: list[str] = []
        completion = await _ask(
            llm,
            convo,
            None if last else tools,
            deadline - clock(),
            _tee(on_delta, streamed, "".join(shown), line),
            result,
            clock,
        )
        if completion is None:
            return result
        calls = _with_ids(completion.tool_calls, step)
        if not calls or last:
            # Text ends the turn; calls on the no-tools call are ignored (there is no step left).
            result.text = "".join(shown) + completion.text
            result.backend = completion.backend
            result.answered = bool(completion.text.strip())
            result.capped = step == max_steps and tools is not None
            return result
        if streamed:
            shown.append("".join(streamed))
        await line.show(registry.status(calls), "".join(shown))
        convo.append(_assistant(completion.text, calls))
        started = clock()
        outcomes = await asyncio.gather(*(_run_one(registry, c, ctx, clock) for c in calls))
        convo.extend(r.message() for r, _ in outcomes)
        result.steps[-1] = _with_tools(result.steps[-1], outcomes, clock() - started)
    return result  # unreachable: the last step always returns


async def _ask(
    llm: LLMClient,
    convo: list[ChatMessage],
    tools: list[dict[str, Any]] | None,
    budget_s: float,
    on_delta: OnDelta | None,
    result: LoopResult,
    clock: Callable[[], float],
) -> Completion | None:
    if budget_s <= 0:
        log.warning("tool loop budget spent after %d steps", len(result.steps))
        return None
    started = clock()
    try:
        completion = await llm.complete(convo, tools=tools, timeout_s=budget_s, on_delta=on_delta)
    except (LLMUnavailableError, LLMRejectedError) as exc:
        log.warning("no model answered step %d: %s", len(result.steps) + 1, exc)
        return None
    result.prompt_tokens += completion.prompt_tokens
    result.completion_tokens += completion.completion_tokens
    result.steps.append(
        StepTrace(
            completion.backend,
            clock() - started,
            0.0,
            completion.prompt_tokens,
            completion.completion_tokens,
        )
    )
    return completion


def _note_in_system_prompt(convo: list[ChatMessage], note: str) -> None:
    """Add `note` to the leading system message (one is made when there is none).

    Not a new system message at the end: Qwen3.5+ chat templates (vLLM) answer 400 "System
    message must be at the beginning" to a system message after the conversation starts.
    """
    if convo and convo[0].get("role") == "system":
        convo[0] = {**convo[0], "content": f"{convo[0].get('content') or ''}\n\n{note}"}
    else:
        convo.insert(0, {"role": "system", "content": note})


class _StatusLine:
    """The tools' status line at the end of the stream while they run (at most one)."""

    def __init__(self, on_delta: OnDelta | None) -> None:
        self.on_delta = on_delta
        self.showing = False

    async def show(self, status: str, shown: str) -> None:
        if self.on_delta is None or not status:
            return
        if self.showing:
            await self.clear(shown)
        await self.on_delta(f"\n\n{status}" if shown.strip() else status)
        self.showing = True

    async def clear(self, shown: str) -> None:
        """Take the line away: the consumer starts again from the text shown so far."""
        if self.on_delta is None or not self.showing:
            return
        self.showing = False
        await self.on_delta(STREAM_RESTART)
        if shown:
            await self.on_delta(shown)


def _tee(
    on_delta: OnDelta | None, into: list[str], shown: str, line: _StatusLine
) -> OnDelta | None:
    """`on_delta` for one step: collects the step's text in `into`; the step's first words
    take a status line away."""
    if on_delta is None:
        return None

    async def forward(piece: str) -> None:
        if piece != STREAM_RESTART:
            await line.clear(shown)
        else:
            line.showing = False  # the consumer clears everything, the line too
            # The router's fallback starts this step again: its half text is void, and
            # the consumer (which clears everything) gets the earlier steps' text back.
            into.clear()
            await on_delta(piece)
            if shown:
                await on_delta(shown)
            return
        into.append(piece)
        await on_delta(piece)

    return forward


def _with_ids(calls: Sequence[ToolCall], step: int) -> list[ToolCall]:
    # Tool messages are matched to calls by id; a backend that sends none gets ours.
    return [
        c if c.id else ToolCall(f"call_{step + 1}_{i}", c.name, c.arguments)
        for i, c in enumerate(calls)
    ]


def _assistant(text: str, calls: Sequence[ToolCall]) -> ChatMessage:
    """The assistant message echoing the calls, in the OpenAI format both backends accept.

    Arguments go back as JSON text of an object: vLLM parses them with `json.loads` to
    render its chat template and answers 400/500 for anything else, so a call whose
    arguments did not parse is echoed with `{}` (its tool message explains the error).
    """
    return {
        "role": "assistant",
        "content": text or None,
        "tool_calls": [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": _echo_arguments(c.arguments)},
            }
            for c in calls
        ],
    }


def _echo_arguments(arguments: str) -> str:
    try:
        parsed = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return "{}"
    return arguments if isinstance(parsed, dict) else "{}"


async def _run_one(
    registry: ToolRegistry, call: ToolCall, ctx: ToolContext, clock: Callable[[], float]
) -> tuple[ToolResult, ToolTrace]:
    started = clock()
    outcome = await registry.run(call, ctx)
    error = "" if outcome.ok else _error_kind(outcome.content)
    return outcome, ToolTrace(call.name, outcome.ok, error, clock() - started)


def _error_kind(content: str) -> str:
    try:
        data = json.loads(content)
    except json.JSONDecodeError:
        return "error"
    return str(data.get("error") or "error") if isinstance(data, dict) else "error"


def _with_tools(
    step: StepTrace, outcomes: Sequence[tuple[ToolResult, ToolTrace]], tools_s: float
) -> StepTrace:
    return StepTrace(
        step.backend,
        step.model_s,
        tools_s,
        step.prompt_tokens,
        step.completion_tokens,
        tuple(t for _, t in outcomes),
    )
