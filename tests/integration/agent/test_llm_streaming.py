"""Streaming answers over sockets: DashScope's SSE (incremental output, tool-call pieces,
errors mid-stream) and the router starting the stream again when vLLM dies mid-answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bot.agent.toolloop import run_loop
from bot.domain import STREAM_RESTART, InboundMessage, Platform
from bot.errors import LLMRejectedError, LLMUnavailableError
from bot.llm.base import ChatMessage, ToolCall, ToolSpec
from bot.llm.breaker import CircuitBreaker
from bot.llm.dashscope import DashScopeClient
from bot.llm.openai_compat import OpenAICompatClient
from bot.llm.router import LLMRouter
from bot.tools.registry import Tool, ToolContext, ToolRegistry
from tests.fakes.base import serve
from tests.fakes.dashscope_server import BASE_PATH, GENERATION_PATH, dashscope_app
from tests.fakes.openai_server import FakeToolCall, LLMFakeState, ScriptedReply, openai_app

MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You are a support agent."},
    {"role": "user", "content": "我的订单到哪了？"},
]
TOOLS: list[ToolSpec] = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    }
]
ANSWER = "您的订单已发货，预计明天送达。"


@dataclass
class Fake:
    url: str
    state: LLMFakeState


@pytest.fixture
def dashscope() -> Iterator[Fake]:
    state = LLMFakeState(model="qwen-plus", api_key="sk-stream", chunk_chars=3)
    with serve(dashscope_app(state)) as url:
        yield Fake(url, state)


@pytest.fixture
def vllm() -> Iterator[Fake]:
    state = LLMFakeState(model="qwen-test", chunk_chars=3)
    with serve(openai_app(state)) as url:
        yield Fake(url, state)


def router(vllm: Fake, dashscope: Fake) -> LLMRouter:
    return LLMRouter(
        [
            OpenAICompatClient("vllm", f"{vllm.url}/v1", vllm.state.model, timeout_s=5),
            dashscope_client(dashscope),
        ],
        breakers=lambda _name: CircuitBreaker(),
    )


def dashscope_client(fake: Fake) -> DashScopeClient:
    return DashScopeClient(
        api_key="sk-stream", model=fake.state.model, base_url=f"{fake.url}{BASE_PATH}", timeout_s=5
    )


class Screen:
    """What a streaming consumer shows: pieces appended, a restart clears them."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.shown = ""

    async def __call__(self, piece: str) -> None:
        self.pieces.append(piece)
        self.shown = "" if piece == STREAM_RESTART else self.shown + piece


async def test_dashscope_streams_the_new_text_of_each_event(dashscope: Fake) -> None:
    dashscope.state.script(ANSWER)
    screen = Screen()
    completion = await dashscope_client(dashscope).complete(MESSAGES, on_delta=screen)
    assert screen.pieces == [ANSWER[i : i + 3] for i in range(0, len(ANSWER), 3)]
    assert completion.text == ANSWER == screen.shown
    prompt = sum(len(m["content"]) for m in MESSAGES)  # the fake counts a token a character
    assert (completion.prompt_tokens, completion.completion_tokens) == (prompt, len(ANSWER))
    sent = dashscope.state.matching(GENERATION_PATH)[0]
    assert sent.headers["x-dashscope-sse"] == "enable"
    assert sent.json["parameters"]["incremental_output"] is True


async def test_dashscope_streams_tool_calls_as_calls_not_text(dashscope: Fake) -> None:
    dashscope.state.script(
        ScriptedReply(
            text="稍等，",
            tool_calls=(
                FakeToolCall("lookup_order", {"order_id": "A-1001"}),
                FakeToolCall("lookup_order", {"order_id": "B-2"}, id="call_x"),
            ),
        )
    )
    screen = Screen()
    completion = await dashscope_client(dashscope).complete(MESSAGES, tools=TOOLS, on_delta=screen)
    assert screen.shown == "稍等，" == completion.text  # the arguments never reach the screen
    assert completion.tool_calls == (
        ToolCall("call_1_0", "lookup_order", '{"order_id": "A-1001"}'),
        ToolCall("call_x", "lookup_order", '{"order_id": "B-2"}'),
    )


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (500, LLMUnavailableError, None),
        (429, LLMUnavailableError, 429),
        (400, LLMRejectedError, 400),
    ],
)
async def test_dashscope_error_event_mid_stream(
    dashscope: Fake, status: int, error: type[Exception], expected: int | None
) -> None:
    dashscope.state.script(ANSWER)
    dashscope.state.error_after_chunks = 2
    dashscope.state.stream_error_status = status
    screen = Screen()
    with pytest.raises(error) as info:
        await dashscope_client(dashscope).complete(MESSAGES, on_delta=screen)
    assert screen.pieces == [ANSWER[:3], ANSWER[3:6]]
    assert getattr(info.value, "status", None) == expected
    assert "request_id=req-1" in str(info.value)


async def test_dashscope_connection_cut_mid_stream_is_unavailable(dashscope: Fake) -> None:
    dashscope.state.script(ANSWER)
    dashscope.state.drop_after_chunks = 2
    with pytest.raises(LLMUnavailableError):
        await dashscope_client(dashscope).complete(MESSAGES, on_delta=Screen())


async def test_dashscope_trickling_stream_is_cut_at_the_budget(dashscope: Fake) -> None:
    dashscope.state.script(ANSWER)
    dashscope.state.chunk_delay_s = 0.2  # 6 events: 1.2 s in all
    screen = Screen()
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError, match="timed out"):
        await dashscope_client(dashscope).complete(MESSAGES, timeout_s=0.5, on_delta=screen)
    assert time.monotonic() - started < 0.9
    assert 1 <= len(screen.pieces) <= 3  # what came in time was passed on as it came


async def test_vllm_dying_mid_answer_restarts_with_dashscope(vllm: Fake, dashscope: Fake) -> None:
    vllm.state.script("这是vLLM的半个回答")
    vllm.state.drop_after_chunks = 3  # the role chunk, two pieces of text, then the cut
    dashscope.state.script(ANSWER)
    screen = Screen()
    completion = await router(vllm, dashscope).complete(MESSAGES, on_delta=screen)
    restart = screen.pieces.index(STREAM_RESTART)
    assert "".join(screen.pieces[:restart]) == "这是vLLM"
    assert "".join(screen.pieces[restart + 1 :]) == ANSWER == screen.shown
    assert (completion.backend, completion.text) == ("dashscope", ANSWER)


async def test_a_restart_after_a_tool_step_keeps_the_text_said_before_it(
    vllm: Fake, dashscope: Fake
) -> None:
    preamble = "好的，我查一下。"

    async def lookup(ctx: ToolContext, order_id: str) -> dict[str, str]:
        vllm.state.drop_after_chunks = 3  # the engine dies during the next answer
        return {"order_id": order_id, "status": "shipped"}

    schema = {"type": "object", "properties": {"order_id": {"type": "string"}}}
    registry = ToolRegistry([Tool("lookup_order", "Find an order.", schema, lookup)])
    vllm.state.script(
        ScriptedReply(text=preamble, tool_calls=(FakeToolCall("lookup_order", {"order_id": "A"}),)),
        "这是vLLM的半个回答",
    )
    dashscope.state.script(ANSWER)
    screen = Screen()
    ctx = ToolContext(InboundMessage(Platform.WEB, "default", "e1", "c1", "u1", "查订单"))
    result = await run_loop(router(vllm, dashscope), MESSAGES, registry, ctx, on_delta=screen)
    assert STREAM_RESTART in screen.pieces
    # The screen and the stored answer say the same: the preamble, then DashScope's answer.
    assert screen.shown == preamble + ANSWER == result.text
    assert result.backend == "dashscope"


class Timeline(Screen):
    """A screen that also records what it showed while the tool ran."""

    def __init__(self) -> None:
        super().__init__()
        self.during_tool: list[str] = []


def _order_registry(screen: Timeline, status: str = "正在查询订单…") -> ToolRegistry:
    async def lookup(ctx: ToolContext, order_id: str) -> dict[str, str]:
        screen.during_tool.append(screen.shown)
        return {"order_id": order_id, "status": "shipped"}

    schema = {"type": "object", "properties": {"order_id": {"type": "string"}}}
    return ToolRegistry([Tool("lookup_order", "Find an order.", schema, lookup, status=status)])


async def test_a_tool_step_shows_its_status_line_until_the_answer_continues(
    vllm: Fake, dashscope: Fake
) -> None:
    preamble = "好的，我查一下。"
    vllm.state.script(
        ScriptedReply(text=preamble, tool_calls=(FakeToolCall("lookup_order", {"order_id": "A"}),)),
        ANSWER,
    )
    screen = Timeline()
    ctx = ToolContext(InboundMessage(Platform.WEB, "default", "e1", "c1", "u1", "查订单"))
    result = await run_loop(
        router(vllm, dashscope), MESSAGES, _order_registry(screen), ctx, on_delta=screen
    )
    assert screen.during_tool == [preamble + "\n\n正在查询订单…"]
    # The answer's first words take the line away; what stays equals the stored answer.
    assert screen.shown == preamble + ANSWER == result.text


async def test_a_status_line_without_preamble_and_a_silent_tool(
    vllm: Fake, dashscope: Fake
) -> None:
    calls = (FakeToolCall("lookup_order", {"order_id": "A"}),)
    vllm.state.script(ScriptedReply(text="", tool_calls=calls), ANSWER)
    screen = Timeline()
    ctx = ToolContext(InboundMessage(Platform.WEB, "default", "e1", "c1", "u1", "查订单"))
    result = await run_loop(
        router(vllm, dashscope), MESSAGES, _order_registry(screen), ctx, on_delta=screen
    )
    assert screen.during_tool == ["正在查询订单…"]
    assert screen.shown == ANSWER == result.text
    # A tool with no status line shows nothing while it runs.
    vllm.state.script(ScriptedReply(text="", tool_calls=calls), ANSWER)
    quiet = Timeline()
    result = await run_loop(
        router(vllm, dashscope), MESSAGES, _order_registry(quiet, status=""), ctx, on_delta=quiet
    )
    assert quiet.during_tool == [""]
    assert STREAM_RESTART not in quiet.pieces
    assert quiet.shown == ANSWER == result.text
