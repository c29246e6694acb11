"""The real model clients and router against the fake vLLM and DashScope servers, over sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bot.errors import LLMRejectedError, LLMUnavailableError
from bot.llm.base import ChatMessage, ToolCall, ToolSpec
from bot.llm.breaker import BreakerState, CircuitBreaker
from bot.llm.dashscope import DashScopeClient
from bot.llm.factory import build_router
from bot.llm.openai_compat import OpenAICompatClient
from bot.llm.router import LLMRouter
from bot.settings import Settings
from tests.fakes.base import serve
from tests.fakes.dashscope_server import BASE_PATH, GENERATION_PATH, dashscope_app
from tests.fakes.openai_server import FakeToolCall, LLMFakeState, ScriptedReply, openai_app

VLLM_KEY = "vllm-test-key"
DASHSCOPE_KEY = "sk-dashscope-test-key"
CHAT_PATH = "/v1/chat/completions"

MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You are a support agent."},
    {"role": "user", "content": "我的订单到哪了？"},
]
TOOLS: list[ToolSpec] = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order by id.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]
TWO_CALLS = ScriptedReply(
    tool_calls=(
        FakeToolCall("lookup_order", {"order_id": "A-1001"}),
        FakeToolCall("lookup_order", {"order_id": "B-2002"}, id="call_custom"),
    )
)


@dataclass
class Fake:
    url: str
    state: LLMFakeState


@pytest.fixture
def vllm() -> Iterator[Fake]:
    state = LLMFakeState(model="qwen2.5-7b-instruct", api_key=VLLM_KEY)
    with serve(openai_app(state)) as url:
        yield Fake(url, state)


@pytest.fixture
def dashscope() -> Iterator[Fake]:
    state = LLMFakeState(model="qwen-plus", api_key=DASHSCOPE_KEY)
    with serve(dashscope_app(state)) as url:
        yield Fake(url, state)


def vllm_client(fake: Fake, *, timeout_s: float = 5, api_key: str = VLLM_KEY) -> OpenAICompatClient:
    return OpenAICompatClient("vllm", f"{fake.url}/v1", fake.state.model, api_key, timeout_s)


def dashscope_client(
    fake: Fake, *, timeout_s: float = 5, api_key: str = DASHSCOPE_KEY
) -> DashScopeClient:
    return DashScopeClient(
        api_key=api_key,
        model=fake.state.model,
        base_url=f"{fake.url}{BASE_PATH}",
        timeout_s=timeout_s,
    )


class Deltas:
    def __init__(self) -> None:
        self.pieces: list[str] = []

    async def __call__(self, piece: str) -> None:
        self.pieces.append(piece)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- OpenAI-compatible (vLLM) -------------------------------------------------------------


async def test_openai_text_answer(vllm: Fake) -> None:
    completion = await vllm_client(vllm).complete(MESSAGES)
    assert completion.text == "ANSWER: 我的订单到哪了？"
    assert completion.tool_calls == ()
    assert completion.backend == "vllm"
    assert completion.prompt_tokens > 0
    assert completion.completion_tokens == len(completion.text)
    [sent] = vllm.state.matching(CHAT_PATH)
    assert sent.headers["authorization"] == f"Bearer {VLLM_KEY}"
    assert sent.json["model"] == vllm.state.model
    assert sent.json["messages"] == MESSAGES
    assert "tools" not in sent.json
    assert not sent.json.get("stream")


async def test_openai_scripted_answers_in_order(vllm: Fake) -> None:
    vllm.state.script("first", "second")
    client = vllm_client(vllm)
    assert (await client.complete(MESSAGES)).text == "first"
    assert (await client.complete(MESSAGES)).text == "second"
    assert (await client.complete(MESSAGES)).text.startswith("ANSWER: ")


async def test_openai_several_tool_calls_in_one_step(vllm: Fake) -> None:
    vllm.state.script(TWO_CALLS)
    completion = await vllm_client(vllm).complete(MESSAGES, tools=TOOLS)
    assert completion.text == ""
    assert completion.tool_calls == (
        ToolCall("call_1_0", "lookup_order", '{"order_id": "A-1001"}'),
        ToolCall("call_custom", "lookup_order", '{"order_id": "B-2002"}'),
    )
    assert vllm.state.matching(CHAT_PATH)[0].json["tools"] == TOOLS


async def test_openai_tool_results_go_back_in_openai_format(vllm: Fake) -> None:
    history: list[ChatMessage] = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup_order", "arguments": '{"order_id": "A-1001"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'},
    ]
    vllm.state.script("已发货")
    assert (await vllm_client(vllm).complete(history, tools=TOOLS)).text == "已发货"
    assert vllm.state.matching(CHAT_PATH)[0].json["messages"] == history


async def test_openai_stream_deltas_arrive_in_order_and_join_to_the_text(vllm: Fake) -> None:
    text = "您的订单 A-1001 已于今天发货，预计两天内送达。"
    vllm.state.script(text)
    deltas = Deltas()
    completion = await vllm_client(vllm).complete(MESSAGES, on_delta=deltas)
    assert completion.text == text
    assert len(deltas.pieces) == -(-len(text) // vllm.state.chunk_chars)
    assert deltas.pieces[0] == text[:4]
    assert "".join(deltas.pieces) == text
    assert completion.completion_tokens == len(text)  # from the include_usage chunk
    assert completion.prompt_tokens > 0
    sent = vllm.state.matching(CHAT_PATH)[0].json
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


async def test_openai_stream_accumulates_several_tool_calls(vllm: Fake) -> None:
    vllm.state.script(ScriptedReply(text="让我查一下。", tool_calls=TWO_CALLS.tool_calls))
    deltas = Deltas()
    completion = await vllm_client(vllm).complete(MESSAGES, tools=TOOLS, on_delta=deltas)
    assert "".join(deltas.pieces) == completion.text == "让我查一下。"
    assert [json.loads(c.arguments) for c in completion.tool_calls] == [
        {"order_id": "A-1001"},
        {"order_id": "B-2002"},
    ]
    assert [c.id for c in completion.tool_calls] == ["call_1_0", "call_custom"]
    assert {c.name for c in completion.tool_calls} == {"lookup_order"}


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
async def test_openai_server_errors_and_throttling_are_unavailable(vllm: Fake, status: int) -> None:
    vllm.state.fail_next(status=status)
    with pytest.raises(LLMUnavailableError) as info:
        await vllm_client(vllm).complete(MESSAGES)
    assert info.value.status == status
    assert info.value.platform == "vllm"
    assert len(vllm.state.matching(CHAT_PATH)) == 1  # no hidden SDK retries


async def test_openai_stream_server_error_is_unavailable(vllm: Fake) -> None:
    vllm.state.fail_next(status=503)
    with pytest.raises(LLMUnavailableError):
        await vllm_client(vllm).complete(MESSAGES, on_delta=Deltas())


async def test_openai_stream_cut_midway_is_unavailable_after_partial_deltas(vllm: Fake) -> None:
    vllm.state.script("这句话会在中途断开，后面的内容永远不会到达。")
    vllm.state.drop_after_chunks = 3
    deltas = Deltas()
    with pytest.raises(LLMUnavailableError):
        await vllm_client(vllm).complete(MESSAGES, on_delta=deltas)
    assert deltas.pieces == ["这句话会", "在中途断"]  # chunk 1 is the empty role chunk


async def test_openai_bad_request_is_rejected(vllm: Fake) -> None:
    vllm.state.fail_next(status=400)
    with pytest.raises(LLMRejectedError) as info:
        await vllm_client(vllm).complete(MESSAGES)
    assert info.value.status == 400


async def test_openai_wrong_key_is_rejected(vllm: Fake) -> None:
    with pytest.raises(LLMRejectedError) as info:
        await vllm_client(vllm, api_key="wrong").complete(MESSAGES)
    assert info.value.status == 401
    assert "invalid_api_key" in str(info.value)
    assert "wrong" not in str(info.value)


async def test_openai_unknown_model_is_rejected(vllm: Fake) -> None:
    client = OpenAICompatClient("vllm", f"{vllm.url}/v1", "no-such-model", VLLM_KEY)
    with pytest.raises(LLMRejectedError) as info:
        await client.complete(MESSAGES)
    assert info.value.status == 404


async def test_openai_slow_server_times_out_quickly(vllm: Fake) -> None:
    vllm.state.delay_s = 3
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError, match="timed out"):
        await vllm_client(vllm, timeout_s=0.5).complete(MESSAGES)
    assert time.monotonic() - started < 1.5


async def test_openai_trickling_stream_is_cut_at_the_overall_timeout(vllm: Fake) -> None:
    # Each chunk comes well within the SDK's read timeout; only the overall limit stops it.
    vllm.state.script("x" * 40)
    vllm.state.chunk_chars = 1
    vllm.state.chunk_delay_s = 0.1
    deltas = Deltas()
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError, match="timed out"):
        await vllm_client(vllm, timeout_s=0.8).complete(MESSAGES, on_delta=deltas)
    assert time.monotonic() - started < 1.8
    assert 0 < len(deltas.pieces) < 40


async def test_openai_caller_timeout_below_the_client_limit_wins(vllm: Fake) -> None:
    vllm.state.delay_s = 3
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError):
        await vllm_client(vllm, timeout_s=30).complete(MESSAGES, timeout_s=0.5)
    assert time.monotonic() - started < 1.5


async def test_openai_connection_refused_is_unavailable() -> None:
    client = OpenAICompatClient("vllm", f"{closed_port_url()}/v1", "m")
    with pytest.raises(LLMUnavailableError, match="connection failed"):
        await client.complete(MESSAGES)


def test_openai_client_survives_a_fresh_event_loop_per_call(vllm: Fake) -> None:
    # Celery runs each task under its own asyncio.run: one client object, many loops.
    client = vllm_client(vllm)
    for _ in range(3):
        assert asyncio.run(client.complete(MESSAGES)).text.startswith("ANSWER: ")


# --- DashScope ----------------------------------------------------------------------------


async def test_dashscope_text_answer_and_wire_format(dashscope: Fake) -> None:
    completion = await dashscope_client(dashscope).complete(MESSAGES)
    assert completion.text == "ANSWER: 我的订单到哪了？"
    assert completion.backend == "dashscope"
    assert completion.completion_tokens == len(completion.text)
    assert completion.prompt_tokens > 0
    [sent] = dashscope.state.matching(GENERATION_PATH)
    assert sent.method == "POST"
    assert sent.headers["authorization"] == f"Bearer {DASHSCOPE_KEY}"
    assert sent.json["model"] == "qwen-plus"
    assert sent.json["input"] == {"messages": MESSAGES}
    assert sent.json["parameters"]["result_format"] == "message"
    assert "tools" not in sent.json["parameters"]


async def test_dashscope_several_tool_calls(dashscope: Fake) -> None:
    dashscope.state.script(TWO_CALLS)
    completion = await dashscope_client(dashscope).complete(MESSAGES, tools=TOOLS)
    assert completion.tool_calls == (
        ToolCall("call_1_0", "lookup_order", '{"order_id": "A-1001"}'),
        ToolCall("call_custom", "lookup_order", '{"order_id": "B-2002"}'),
    )
    assert dashscope.state.matching(GENERATION_PATH)[0].json["parameters"]["tools"] == TOOLS


async def test_dashscope_null_content_is_sent_as_empty_string(dashscope: Fake) -> None:
    history: list[ChatMessage] = [
        *MESSAGES,
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "{}"},
    ]
    await dashscope_client(dashscope).complete(history)
    sent = dashscope.state.matching(GENERATION_PATH)[0].json["input"]["messages"]
    assert sent[2]["content"] == ""
    assert sent[2]["tool_calls"] == history[2]["tool_calls"]


async def test_dashscope_wrong_key_is_rejected(dashscope: Fake) -> None:
    with pytest.raises(LLMRejectedError) as info:
        await dashscope_client(dashscope, api_key="sk-wrong").complete(MESSAGES)
    assert info.value.status == 401
    assert "InvalidApiKey" in str(info.value)
    assert "sk-wrong" not in str(info.value)


@pytest.mark.parametrize(("status", "code"), [(429, "Throttling"), (500, "InternalError")])
async def test_dashscope_throttling_and_server_errors_are_unavailable(
    dashscope: Fake, status: int, code: str
) -> None:
    dashscope.state.fail_next(status=status)
    with pytest.raises(LLMUnavailableError) as info:
        await dashscope_client(dashscope).complete(MESSAGES)
    assert info.value.status == status
    assert code in str(info.value)
    assert "request_id=" in str(info.value)


async def test_dashscope_unknown_model_is_rejected(dashscope: Fake) -> None:
    base_url = f"{dashscope.url}{BASE_PATH}"
    client = DashScopeClient(api_key=DASHSCOPE_KEY, model="qwen-nope", base_url=base_url)
    with pytest.raises(LLMRejectedError) as info:
        await client.complete(MESSAGES)
    assert info.value.status == 400


async def test_dashscope_slow_server_times_out_quickly(dashscope: Fake) -> None:
    dashscope.state.delay_s = 3
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError, match="timed out"):
        await dashscope_client(dashscope, timeout_s=0.5).complete(MESSAGES)
    assert time.monotonic() - started < 1.5


async def test_dashscope_connection_refused_is_unavailable() -> None:
    client = DashScopeClient(api_key=DASHSCOPE_KEY, base_url=f"{closed_port_url()}{BASE_PATH}")
    with pytest.raises(LLMUnavailableError):
        await client.complete(MESSAGES)


# --- Router over both ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def router(vllm: Fake, dashscope: Fake, breakers: dict[str, CircuitBreaker]) -> LLMRouter:
    def breaker(name: str) -> CircuitBreaker:
        return breakers.setdefault(name, CircuitBreaker())

    return LLMRouter([vllm_client(vllm), dashscope_client(dashscope)], breakers=breaker)


async def test_router_prefers_vllm(vllm: Fake, dashscope: Fake) -> None:
    completion = await router(vllm, dashscope, {}).complete(MESSAGES)
    assert completion.backend == "vllm"
    assert dashscope.state.requests == []


async def test_router_falls_back_to_dashscope_when_vllm_fails(vllm: Fake, dashscope: Fake) -> None:
    vllm.state.fail_next(status=503)
    dashscope.state.script("来自通义千问")
    completion = await router(vllm, dashscope, {}).complete(MESSAGES)
    assert (completion.backend, completion.text) == ("dashscope", "来自通义千问")
    assert len(vllm.state.requests) == 1


async def test_router_falls_back_when_vllm_is_too_slow(vllm: Fake, dashscope: Fake) -> None:
    vllm.state.delay_s = 3
    client = LLMRouter(
        [vllm_client(vllm, timeout_s=0.5), dashscope_client(dashscope)],
        breakers=lambda _: CircuitBreaker(),
    )
    started = time.monotonic()
    assert (await client.complete(MESSAGES)).backend == "dashscope"
    assert time.monotonic() - started < 2


async def test_router_both_down_is_unavailable(vllm: Fake, dashscope: Fake) -> None:
    vllm.state.fail_next(status=500)
    dashscope.state.fail_next(status=429)
    with pytest.raises(LLMUnavailableError, match="all model backends failed"):
        await router(vllm, dashscope, {}).complete(MESSAGES)


async def test_router_breaker_stops_calling_vllm_then_probes_it(
    vllm: Fake, dashscope: Fake
) -> None:
    clock = Clock()
    breakers = {"vllm": CircuitBreaker(failure_threshold=2, reset_after_s=30, clock=clock)}
    client = router(vllm, dashscope, breakers)
    vllm.state.fail_next(2, status=500)
    for _ in range(4):
        assert (await client.complete(MESSAGES)).backend == "dashscope"
    assert len(vllm.state.requests) == 2  # open after two failures: calls 3 and 4 skip it
    assert breakers["vllm"].state is BreakerState.OPEN

    clock.now += 30  # the probe after the pause finds vLLM healthy again
    assert (await client.complete(MESSAGES)).backend == "vllm"
    assert len(vllm.state.requests) == 3
    assert breakers["vllm"].state is BreakerState.CLOSED
    assert len(dashscope.state.requests) == 4


async def test_router_failed_probe_reopens(vllm: Fake, dashscope: Fake) -> None:
    clock = Clock()
    breakers = {"vllm": CircuitBreaker(failure_threshold=1, reset_after_s=30, clock=clock)}
    client = router(vllm, dashscope, breakers)
    vllm.state.fail_next(2, status=503)
    await client.complete(MESSAGES)
    clock.now += 30
    assert (await client.complete(MESSAGES)).backend == "dashscope"  # the probe failed
    assert (await client.complete(MESSAGES)).backend == "dashscope"  # and was not retried
    assert len(vllm.state.requests) == 2


async def test_router_built_from_settings(vllm: Fake, dashscope: Fake) -> None:
    settings = Settings.load(
        None,
        vllm={"base_url": f"{vllm.url}/v1", "model": vllm.state.model, "api_key": VLLM_KEY},
        dashscope={"api_key": DASHSCOPE_KEY, "base_url": f"{dashscope.url}{BASE_PATH}"},
    )
    built = build_router(settings)
    assert built is not None
    assert [c.name for c in built.clients] == ["vllm", "dashscope"]
    # Only DashScope answers: the vLLM breaker may be shared process-wide, so fail it once only.
    vllm.state.fail_next(status=503)
    assert (await built.complete(MESSAGES)).backend == "dashscope"


def test_no_backend_configured_builds_no_router() -> None:
    assert build_router(Settings.load(None)) is None
