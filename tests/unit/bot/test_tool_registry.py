"""The tool registry: every call is validated, timed, and ends as a result the model reads."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema
import pytest

from bot.domain import InboundMessage, Platform
from bot.llm.base import ToolCall
from bot.tools.registry import Tool, ToolContext, ToolError, ToolRegistry, no_arguments

ORDER_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string", "pattern": "^[A-Z0-9]{6,32}$"}},
    "required": ["order_id"],
    "additionalProperties": False,
}


def _ctx() -> ToolContext:
    msg = InboundMessage(Platform.WEB, "default", "e1", "u1", "u1", "hi")
    return ToolContext(message=msg)


async def _echo(ctx: ToolContext, order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "user": ctx.message.sender_id}


async def _slow(ctx: ToolContext) -> str:
    del ctx
    await asyncio.sleep(5)
    return "late"


async def _refuses(ctx: ToolContext) -> str:
    del ctx
    raise ToolError("订单系统暂时不可用")


async def _crashes(ctx: ToolContext) -> str:
    del ctx
    raise RuntimeError("secret internal detail")


def _registry() -> ToolRegistry:
    return ToolRegistry(
        [
            Tool("echo", "echo an order id", ORDER_SCHEMA, _echo),
            Tool("slow", "never finishes in time", no_arguments(), _slow, timeout_s=0.05),
            Tool("refuses", "raises ToolError", no_arguments(), _refuses),
            Tool("crashes", "raises a bug", no_arguments(), _crashes),
        ]
    )


async def _run(name: str, arguments: str) -> tuple[bool, dict[str, Any]]:
    result = await _registry().run(ToolCall("c1", name, arguments), _ctx())
    assert result.call_id == "c1"
    return result.ok, json.loads(result.content)


async def test_valid_call_runs_with_the_context() -> None:
    ok, body = await _run("echo", '{"order_id": "QH2025"}')
    assert ok
    assert body == {"order_id": "QH2025", "user": "u1"}


@pytest.mark.parametrize(
    ("name", "arguments", "error"),
    [
        ("nope", "{}", "unknown_tool"),
        ("echo", "{not json", "bad_arguments"),
        ("echo", "[1, 2]", "bad_arguments"),
        ("echo", '{"order_id": 42}', "bad_arguments"),
        ("echo", '{"order_id": "QH2025", "customer_id": "C1"}', "bad_arguments"),
        ("echo", "{}", "bad_arguments"),
        ("slow", "{}", "timeout"),
        ("refuses", "{}", "tool_error"),
        ("crashes", "{}", "tool_error"),
    ],
)
async def test_every_failure_is_a_readable_error_result(
    name: str, arguments: str, error: str
) -> None:
    ok, body = await _run(name, arguments)
    assert not ok
    assert body["error"] == error
    assert body["message"]
    assert "secret internal detail" not in body["message"]  # bugs do not leak to the model


async def test_unknown_tool_names_the_available_ones() -> None:
    _ok, body = await _run("nope", "{}")
    assert "echo" in body["message"]


async def test_tool_error_message_reaches_the_model() -> None:
    _ok, body = await _run("refuses", "{}")
    assert body["message"] == "订单系统暂时不可用"


def test_result_message_is_an_openai_tool_message() -> None:
    registry = _registry()
    result = asyncio.run(registry.run(ToolCall("c9", "echo", '{"order_id": "AB1234"}'), _ctx()))
    assert result.message()["role"] == "tool"
    assert result.message()["tool_call_id"] == "c9"


def test_specs_are_openai_function_tools() -> None:
    specs = _registry().specs()
    assert [s["function"]["name"] for s in specs] == ["echo", "slow", "refuses", "crashes"]
    assert all(s["type"] == "function" for s in specs)
    assert specs[0]["function"]["parameters"]["required"] == ["order_id"]


def test_duplicate_and_invalid_schemas_are_refused_at_registration() -> None:
    registry = _registry()
    with pytest.raises(ValueError, match="twice"):
        registry.add(Tool("echo", "again", ORDER_SCHEMA, _echo))
    with pytest.raises(jsonschema.SchemaError):
        registry.add(Tool("broken", "bad schema", {"type": "no-such-type"}, _echo))
