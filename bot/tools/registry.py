"""The tool registry: what the model may call, how arguments are checked, how calls run.

A tool is an async function and its JSON schema (OpenAI tools format). Every call is
validated against the schema before the function runs, runs under its own timeout, and
always produces a `ToolResult` the model can read: a tool never raises into the loop.
Identity lives in `ToolContext`, filled in by code before the loop starts (the bound
customer account): no tool argument can name whose data a tool returns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from bot.domain import InboundMessage, Source
from bot.llm.base import ToolCall, ToolSpec
from bot.metrics import TOOL_CALLS, TOOL_LATENCY

log = logging.getLogger(__name__)

DEFAULT_TOOL_TIMEOUT_S = 10.0


@dataclass(slots=True)
class ToolContext:
    """Who is asking, set by code for one turn; tools read it, only binding tools change it.

    `customer_id` is the customer account the platform user is bound to (None: not bound);
    `handoff_reason` is set by `handoff_to_human` and acted on by the pipeline.
    """

    message: InboundMessage
    customer_id: str | None = None
    handoff_reason: str = ""
    sources: list[Source] = field(default_factory=list)
    confidence: float | None = None  # best knowledge-search score seen this turn

    @property
    def platform_user(self) -> tuple[str, str, str]:
        """(platform, app, user id): the key a binding is stored under."""
        m = self.message
        return (m.platform.value, m.app, m.sender_id)


Handler = Callable[..., Awaitable[Any]]  # async def tool(ctx: ToolContext, **arguments)


@dataclass(frozen=True, slots=True)
class Tool:
    """One callable tool: its name, what it does (for the model), its schema and handler.

    `status` is the short line a customer watching a streamed answer sees while the tool
    runs ("正在查询订单…"); "" for a tool too quick to mention.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]  # JSON schema of the arguments object
    handler: Handler
    timeout_s: float = DEFAULT_TOOL_TIMEOUT_S
    status: str = ""

    def spec(self) -> ToolSpec:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a call produced, as the JSON text the model reads back (`content`)."""

    call_id: str
    name: str
    content: str
    ok: bool

    def message(self) -> dict[str, Any]:
        """The OpenAI `tool` role message carrying this result."""
        return {
            "role": "tool",
            "tool_call_id": self.call_id,
            "name": self.name,
            "content": self.content,
        }


def no_arguments() -> dict[str, Any]:
    """The schema of a tool that takes no arguments."""
    return {"type": "object", "properties": {}, "additionalProperties": False}


class ToolError(Exception):
    """Raised by a tool for a failure the model should read (e.g. backend unavailable)."""


class ToolRegistry:
    """The tools one agent offers; `run` executes a model's call safely."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._validators: dict[str, jsonschema.Draft202012Validator] = {}
        for tool in tools:
            self.add(tool)

    def add(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} registered twice")
        jsonschema.Draft202012Validator.check_schema(dict(tool.parameters))
        self._tools[tool.name] = tool
        # Built once: constructing a validator is most of the cost of checking a call.
        self._validators[tool.name] = jsonschema.Draft202012Validator(dict(tool.parameters))

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._tools)

    def specs(self) -> list[ToolSpec]:
        return [t.spec() for t in self._tools.values()]

    def status(self, calls: Iterable[ToolCall]) -> str:
        """What to show while `calls` run: the first of their tools' status lines, or ""."""
        for call in calls:
            tool = self._tools.get(call.name)
            if tool is not None and tool.status:
                return tool.status
        return ""

    async def run(self, call: ToolCall, ctx: ToolContext) -> ToolResult:
        """Validate and run one call; every failure becomes an error result, never a raise."""
        tool = self._tools.get(call.name)
        if tool is None:
            known = "、".join(self._tools) or "无"
            message = f"没有名为 {call.name} 的工具；可用工具：{known}"
            return self._error(call, "unknown_tool", message)
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError as exc:
            return self._error(call, "bad_arguments", f"参数不是合法的 JSON：{exc.msg}")
        if not isinstance(arguments, dict):
            return self._error(call, "bad_arguments", "参数必须是 JSON 对象")
        problem = _schema_problem(self._validators[tool.name], arguments)
        if problem is not None:
            return self._error(call, "bad_arguments", problem)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(tool.timeout_s):
                value = await tool.handler(ctx, **arguments)
        except TimeoutError:
            message = f"工具 {tool.name} 在 {tool.timeout_s:g} 秒内没有完成"
            return self._error(call, "timeout", message)
        except ToolError as exc:
            return self._error(call, "tool_error", str(exc))
        except Exception:
            log.exception("tool %s failed", tool.name)
            return self._error(call, "tool_error", f"工具 {tool.name} 内部错误，请稍后再试")
        finally:
            TOOL_LATENCY.labels(call.name).observe(time.perf_counter() - started)
        TOOL_CALLS.labels(tool.name, "ok").inc()
        content = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return ToolResult(call.id, tool.name, content, ok=True)

    def _error(self, call: ToolCall, kind: str, message: str) -> ToolResult:
        name = call.name if call.name in self._tools else "unknown"
        TOOL_CALLS.labels(name, kind).inc()
        log.info("tool call %s rejected (%s): %s", call.name, kind, message)
        content = json.dumps({"error": kind, "message": message}, ensure_ascii=False)
        return ToolResult(call.id, call.name, content, ok=False)


def _schema_problem(
    validator: jsonschema.Draft202012Validator, arguments: dict[str, Any]
) -> str | None:
    """The first way `arguments` breaks the schema, in words the model can act on; else None."""
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "参数"
    return f"参数不符合要求（{where}）：{error.message}"
