"""Our OpenAI wire client against servers that misbehave, and against the official SDK.

The fake vLLM (tests/fakes/openai_server.py) is driven here by the `openai` SDK as well: if
the fake drifted from the real protocol, the SDK would fail to read it, and the
agreement of the two clients on the same answers shows ours reads what the SDK reads.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator

import openai
import pytest
from aiohttp import web
from openai.types.chat import ChatCompletion

from bot.errors import LLMRejectedError, LLMUnavailableError
from bot.llm import openai_wire
from bot.llm.base import ChatMessage, ToolSpec
from bot.llm.openai_compat import OpenAICompatClient
from tests.fakes.base import serve
from tests.fakes.openai_server import FakeToolCall, LLMFakeState, ScriptedReply, openai_app

MESSAGES: list[ChatMessage] = [{"role": "user", "content": "运费多少？"}]
TOOLS: list[ToolSpec] = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order by id.",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    }
]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
def hostile() -> Iterator[Callable[[Handler], OpenAICompatClient]]:
    """A client of a one-route server whose handler the test chooses."""
    stack: list[Iterator[str]] = []

    def make(handler: Handler) -> OpenAICompatClient:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        ctx = serve(app)
        url = ctx.__enter__()
        stack.append(ctx)
        return OpenAICompatClient("vllm", f"{url}/v1", "m", "k", 2)

    yield make
    for ctx in stack:
        ctx.__exit__(None, None, None)


async def _sse(request: web.Request, lines: list[bytes]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for line in lines:
        await response.write(line)
    await response.write_eof()
    return response


def _chunk(text: str) -> bytes:
    delta = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return b"data: " + json.dumps(delta).encode() + b"\n\n"


async def test_html_error_page_is_unavailable_with_its_status(hostile) -> None:  # type: ignore[no-untyped-def]
    async def handler(_: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")

    with pytest.raises(LLMUnavailableError) as info:
        await hostile(handler).complete(MESSAGES)
    assert info.value.status == 502
    assert "HTTP 502" in str(info.value)


async def test_a_4xx_reason_is_the_code_never_the_message(hostile) -> None:  # type: ignore[no-untyped-def]
    async def handler(_: web.Request) -> web.Response:
        body = {"object": "error", "message": "prompt 运费多少 too long", "type": "BadRequestError"}
        return web.json_response(body, status=400)

    with pytest.raises(LLMRejectedError) as info:
        await hostile(handler).complete(MESSAGES)
    assert "BadRequestError" in str(info.value)
    assert "运费" not in str(info.value)


async def test_an_answer_that_is_not_json_is_unavailable(hostile) -> None:  # type: ignore[no-untyped-def]
    async def handler(_: web.Request) -> web.Response:
        return web.Response(text="{not json", content_type="application/json")

    with pytest.raises(LLMUnavailableError, match="not JSON"):
        await hostile(handler).complete(MESSAGES)


async def test_an_oversized_answer_is_refused_not_buffered(hostile, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(openai_wire, "MAX_BODY_BYTES", 1000)

    async def handler(_: web.Request) -> web.Response:
        return web.json_response({"choices": [{"message": {"content": "x" * 5000}}]})

    with pytest.raises(LLMUnavailableError, match="larger than 1000"):
        await hostile(handler).complete(MESSAGES)


async def test_a_stream_that_ends_without_done_is_a_cut_answer(hostile) -> None:  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _sse(request, [_chunk("一半")])

    pieces: list[str] = []

    async def on_delta(piece: str) -> None:
        pieces.append(piece)

    with pytest.raises(LLMUnavailableError, match="ended before"):
        await hostile(handler).complete(MESSAGES, on_delta=on_delta)
    assert pieces == ["一半"]


async def test_an_error_event_inside_a_stream_is_unavailable(hostile) -> None:  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.StreamResponse:
        error = {"error": {"message": "engine died", "code": "engine_dead"}}
        return await _sse(request, [_chunk("半"), b"data: " + json.dumps(error).encode() + b"\n\n"])

    async def on_delta(_: str) -> None:
        return None

    with pytest.raises(LLMUnavailableError, match="engine_dead"):
        await hostile(handler).complete(MESSAGES, on_delta=on_delta)


async def test_comments_crlf_and_data_without_a_space_are_read(hostile) -> None:  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.StreamResponse:
        data = json.dumps(
            {"choices": [{"index": 0, "delta": {"content": "好"}, "finish_reason": None}]}
        ).encode()
        lines = [b": keep-alive\r\n\r\n", b"data:" + data + b"\r\n\r\n", _chunk("的")]
        return await _sse(request, [*lines, b"data: [DONE]\n\n"])

    pieces: list[str] = []

    async def on_delta(piece: str) -> None:
        pieces.append(piece)

    completion = await hostile(handler).complete(MESSAGES, on_delta=on_delta)
    assert completion.text == "好的" == "".join(pieces)


async def test_a_huge_stream_event_is_refused(hostile, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(openai_wire, "MAX_EVENT_BYTES", 2000)

    async def handler(request: web.Request) -> web.StreamResponse:
        return await _sse(request, [_chunk("x" * 5000)])

    async def on_delta(_: str) -> None:
        return None

    with pytest.raises(LLMUnavailableError, match="too large"):
        await hostile(handler).complete(MESSAGES, on_delta=on_delta)


@pytest.fixture
def vllm() -> Iterator[tuple[str, LLMFakeState]]:
    state = LLMFakeState(model="qwen", api_key="key")
    with serve(openai_app(state)) as url:
        yield url, state


@pytest.mark.parametrize("stream", [False, True])
async def test_our_client_and_the_official_sdk_read_the_fake_alike(vllm, stream: bool) -> None:  # type: ignore[no-untyped-def]
    url, state = vllm
    reply = ScriptedReply(
        text="先查一下", tool_calls=(FakeToolCall("lookup_order", {"order_id": "A-1"}),)
    )
    state.script(reply, reply)
    sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="key", max_retries=0)
    try:
        if stream:
            text, args = "", ""
            name = call_id = ""
            events = await sdk.chat.completions.create(
                model="qwen",
                messages=MESSAGES,
                tools=TOOLS,
                stream=True,  # type: ignore[arg-type]
            )
            async for chunk in events:
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                    for piece in choice.delta.tool_calls or ():
                        call_id = call_id or piece.id or ""
                        if piece.function is not None:
                            name = name or piece.function.name or ""
                            args += piece.function.arguments or ""
        else:
            answer: ChatCompletion = await sdk.chat.completions.create(
                model="qwen",
                messages=MESSAGES,
                tools=TOOLS,  # type: ignore[arg-type]
            )
            message = answer.choices[0].message
            text = message.content or ""
            call = message.tool_calls[0]  # type: ignore[index]
            call_id, name, args = call.id, call.function.name, call.function.arguments  # type: ignore[union-attr]
    finally:
        await sdk.close()

    pieces: list[str] = []

    async def on_delta(piece: str) -> None:
        pieces.append(piece)

    ours = await OpenAICompatClient("vllm", f"{url}/v1", "qwen", "key").complete(
        MESSAGES, tools=TOOLS, on_delta=on_delta if stream else None
    )
    assert ours.text == text == "先查一下"
    # Same call (each answer has its own id: the fake numbers them by call).
    assert [(c.name, c.arguments) for c in ours.tool_calls] == [(name, args)]
    assert call_id.startswith("call_")
    assert ours.tool_calls[0].id.startswith("call_")
    assert json.loads(args) == {"order_id": "A-1"}
    assert ours.prompt_tokens > 0
    assert ours.completion_tokens > 0
    if stream:
        assert "".join(pieces) == text


async def test_a_line_longer_than_the_read_buffer_is_refused(hostile) -> None:  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _sse(request, [b"data: " + b"x" * 1_200_000 + b"\n\n"])

    async def on_delta(_: str) -> None:
        return None

    with pytest.raises(LLMUnavailableError, match="too large"):
        await hostile(handler).complete(MESSAGES, on_delta=on_delta)
