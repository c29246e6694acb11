"""A fake OpenAI-compatible model server: vLLM's `/v1/chat/completions` and `/v1/models`.

It speaks the real wire format (JSON, or SSE chunks ending `data: [DONE]` for `stream: true`)
and answers from a script, so tests can assert exact text. From a test:

    state = LLMFakeState()
    state.script("hello", ScriptedReply(tool_calls=(FakeToolCall("lookup", {"id": 1}),)))
    state.fail_next(2, status=503)        # the next 2 calls fail (FakeState); 429, 500 too
    state.fail_next(status=200, delay_s=3)  # the next call is slow, then answers normally
    state.delay_s = 5                     # every call waits this long first (too slow)
    state.drop_after_chunks = 3           # a stream dies after 3 chunks (connection cut)
    with serve(openai_app(state)) as url:
        client = OpenAICompatClient("vllm", f"{url}/v1", state.model)
        ...
    state.matching("/chat/completions")[0].json   # what the client sent

An unscripted call answers "ANSWER: <last user text>". `LLMFakeState` and `ScriptedReply`
are shared with the DashScope fake.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeState, record


@dataclass(frozen=True)
class FakeToolCall:
    """A function call the fake model makes; `arguments` is JSON-encoded unless already text."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str = ""

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, ensure_ascii=False)


@dataclass(frozen=True)
class ScriptedReply:
    """One scripted answer: text, tool calls, or both; `error` answers that HTTP status instead.

    `error` lets a script fail one given step (e.g. the second call of a tool loop).
    """

    text: str = ""
    tool_calls: tuple[FakeToolCall, ...] = ()
    error: int = 0


@dataclass
class LLMFakeState(FakeState):
    """FakeState plus the model's script and the knobs both LLM fakes share."""

    replies: list[ScriptedReply] = field(default_factory=list)
    model: str = "fake-model"  # a request for another model is refused, as the real ones do
    api_key: str = ""  # when set, `Authorization: Bearer <api_key>` is required
    chunk_chars: int = 4  # streamed text arrives in pieces of this many characters
    chunk_delay_s: float = 0.0  # pause after each streamed chunk: a trickling stream
    drop_after_chunks: int | None = None  # cut the connection mid-stream, as a dying engine
    # DashScope only: after this many chunks an `event:error` with this status ends the stream.
    error_after_chunks: int | None = None
    stream_error_status: int = 500
    calls: int = 0
    # A vision-language model: image_url parts are accepted (a text-only model answers 400,
    # as vLLM does for a model that is not multimodal).
    vision: bool = False
    # DashScope only: the model its multimodal endpoint serves (qwen-vl-max); "" serves none.
    vision_model: str = ""

    def script(self, *replies: ScriptedReply | str) -> None:
        """Queue answers for the next calls, in order; a str is a text-only answer."""
        with self.lock:
            self.replies.extend(ScriptedReply(text=r) if isinstance(r, str) else r for r in replies)

    def next_reply(self, messages: Sequence[Any]) -> tuple[int, ScriptedReply]:
        """The call's sequence number and its answer: the next scripted one, else the echo."""
        with self.lock:
            self.calls += 1
            if self.replies:
                return self.calls, self.replies.pop(0)
        return self.calls, ScriptedReply(text=f"ANSWER: {last_user_text(messages)}")


def last_user_text(messages: Sequence[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def tool_protocol_problem(messages: Sequence[Any], *, null_content: bool = True) -> str | None:
    """How `messages` break the tool-calling message rules both servers enforce; else None.

    An assistant message's `tool_calls` carry `{"id", "type": "function", "function":
    {"name", "arguments"}}` with `arguments` the JSON text of an object (vLLM `json.loads`
    it to render the chat template and fails the request otherwise); every call is answered
    by a `tool` message with its `tool_call_id` before the next non-tool message, and a
    `tool` message answers a call of the assistant message before it. DashScope also wants
    a string `content` (`null_content=False`).
    """
    pending: set[str] = set()
    open_ids: set[str] = set()
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            return f"messages[{i}] is not an object"
        role = m.get("role")
        if role != "tool" and pending:
            return f"tool_call_ids without a tool message: {', '.join(sorted(pending))}"
        if m.get("content") is None and not (null_content and m.get("tool_calls")):
            return f"messages[{i}].content must be a string"
        if role == "assistant" and m.get("tool_calls"):
            open_ids = set()
            for call in m["tool_calls"]:
                if call.get("type") != "function" or not call.get("id"):
                    return f"messages[{i}].tool_calls: id and type are required"
                if "function" in call:  # (lenient: a call without one is not checked further)
                    problem = _call_problem(call["function"])
                    if problem is not None:
                        return f"messages[{i}].tool_calls: {problem}"
                open_ids.add(call["id"])
            pending = set(open_ids)
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if call_id not in open_ids:
                return f"messages[{i}]: role 'tool' must answer a preceding tool call"
            pending.discard(call_id)
    if pending:
        return f"tool_call_ids without a tool message: {', '.join(sorted(pending))}"
    return None


def _call_problem(function: Any) -> str | None:
    if not isinstance(function, dict) or not function.get("name"):
        return "function.name is required"
    try:
        arguments = json.loads(str(function.get("arguments")))
    except (TypeError, ValueError):
        return "arguments are not valid JSON"
    return None if isinstance(arguments, dict) else "arguments must be a JSON object"


def image_problem(messages: Sequence[Any], *, vision: bool) -> str | None:
    """How the image parts of `messages` would be refused; None when they are fine.

    vLLM takes ``{"type": "image_url", "image_url": {"url": ...}}`` parts with an http(s)
    or ``data:image/...;base64,`` URL, in user messages, and only for a multimodal model.
    """
    for i, m in enumerate(messages):
        content = m.get("content") if isinstance(m, dict) else None
        if not isinstance(content, list):
            continue
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                continue
            if kind != "image_url":
                return f"messages[{i}]: unknown content part {kind!r}"
            if not vision:
                return "The model is not a multimodal model: image input is not supported."
            if m.get("role") != "user":
                return f"messages[{i}]: images only in user messages"
            url = (part.get("image_url") or {}).get("url")
            if not isinstance(url, str) or not image_bytes(url):
                return f"messages[{i}]: image_url.url is not a base64 data URL of a picture"
    return None


def image_bytes(url: str) -> bytes:
    """The bytes of a ``data:image/…;base64,`` URL (b"" for anything else)."""
    head, _, data = url.partition(",")
    if not (head.startswith("data:image/") and head.endswith(";base64")):
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        return b""


def pictures_sent(messages: Sequence[Any]) -> list[bytes]:
    """Every picture in `messages`, in order: what a test asserts the model received."""
    return [
        image_bytes(part["image_url"]["url"])
        for m in messages
        if isinstance(m, dict) and isinstance(m.get("content"), list)
        for part in m["content"]
        if isinstance(part, dict) and part.get("type") == "image_url"
    ]


def count_tokens(text: str) -> int:
    """The fake's token count: one per character, so tests can predict usage."""
    return len(text)


def prompt_tokens(messages: Sequence[Any]) -> int:
    return sum(
        count_tokens(m["content"])
        for m in messages
        if isinstance(m, dict) and isinstance(m.get("content"), str)
    )


def system_position_problem(messages: Sequence[Any]) -> str | None:
    """vLLM serving Qwen3.5 and later: the chat template refuses a system message that is
    not the first message (a 400 with this text), so the fake does too."""
    for index, message in enumerate(messages):
        if index > 0 and isinstance(message, dict) and message.get("role") == "system":
            return "System message must be at the beginning."
    return None


def bearer_ok(state: LLMFakeState, request: web.Request) -> bool:
    """Whether the request carries the expected key (any key when none is set)."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header.removeprefix("Bearer ").strip():
        return False
    return not state.api_key or header == f"Bearer {state.api_key}"


async def pause(request: web.Request, seconds: float) -> None:
    """Sleep like a slow model, but stop once the client has hung up (its timeout).

    A handler still asleep when the test stops the server would be destroyed pending.
    """
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if request.transport is None or request.transport.is_closing():
            return
        await asyncio.sleep(0.02)


def tool_call_id(call_no: int, index: int, call: FakeToolCall) -> str:
    return call.id or f"call_{call_no}_{index}"


STATE = web.AppKey("state", LLMFakeState)

_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to use this model.", "invalid_request_error", None),
    404: ("The model does not exist.", "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request.", "server_error", None),
    503: ("The engine is currently overloaded.", "server_error", "service_unavailable"),
}


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error body: `{"error": {"message", "type", "param", "code"}}`."""
    default, kind, code = _ERRORS.get(status, ("Error.", "server_error", None))
    return {"error": {"message": message or default, "type": kind, "param": None, "code": code}}


def _error(status: int, message: str | None = None) -> web.Response:
    return web.json_response(error_body(status, message), status=status)


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    rec = await record(state, request)
    await pause(request, state.delay_s)
    failure = state.take_failure()
    if failure is not None:
        await pause(request, failure.delay_s)
        if failure.status >= 400:  # below 400: only slow, then the normal answer
            body = failure.body if failure.body is not None else error_body(failure.status)
            return web.json_response(body, status=failure.status)
    if not bearer_ok(state, request):
        return _error(401)
    body = rec.json
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return _error(400, "'messages' is a required property")
    if body.get("model") != state.model:
        return _error(404, f"The model `{body.get('model')}` does not exist.")
    problem = (
        tool_protocol_problem(body["messages"])
        or system_position_problem(body["messages"])
        or image_problem(body["messages"], vision=state.vision)
    )
    if problem is not None:
        return _error(400, problem)
    call_no, reply = state.next_reply(body["messages"])
    if reply.error:
        return _error(reply.error)
    usage = {
        "prompt_tokens": prompt_tokens(body["messages"]),
        "completion_tokens": count_tokens(reply.text),
    }
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await _stream(request, state, call_no, reply, usage if include_usage else None)
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": tool_call_id(call_no, i, c),
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments_json()},
            }
            for i, c in enumerate(reply.tool_calls)
        ]
    return web.json_response(
        {
            "id": f"chatcmpl-{call_no}",
            "object": "chat.completion",
            "created": 0,
            "model": state.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                    "logprobs": None,
                }
            ],
            "usage": usage,
        }
    )


async def _stream(
    request: web.Request,
    state: LLMFakeState,
    call_no: int,
    reply: ScriptedReply,
    usage: dict[str, int] | None,
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    size = max(1, state.chunk_chars)

    def chunk(delta: dict[str, Any] | None, finish: str | None = None) -> dict[str, Any]:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        return {
            "id": f"chatcmpl-{call_no}",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": state.model,
            "choices": choices,
        }

    events = [chunk({"role": "assistant", "content": ""})]
    events += [
        chunk({"content": reply.text[i : i + size]}) for i in range(0, len(reply.text), size)
    ]
    for index, call in enumerate(reply.tool_calls):
        # As OpenAI and vLLM do: id and name in the first piece, then the arguments in slices.
        head = {"index": index, "id": tool_call_id(call_no, index, call), "type": "function"}
        events.append(chunk({"tool_calls": [{**head, "function": {"name": call.name}}]}))
        args = call.arguments_json()
        events += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": args[i : i + size]}}]})
            for i in range(0, len(args), size)
        ]
    events.append(chunk({}, "tool_calls" if reply.tool_calls else "stop"))
    if usage is not None:
        events.append({**chunk(None), "usage": usage})
    try:
        for sent, event in enumerate(events):
            if sent == state.drop_after_chunks and request.transport is not None:
                # What was sent arrives before the cut: a reset can make the client's
                # kernel drop data it has not read yet, and the tests count what arrived.
                await asyncio.sleep(0.05)
                request.transport.abort()
                return response
            await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            await pause(request, state.chunk_delay_s)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client gave up (its timeout): nothing left to send to
    return response


async def _models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    await record(state, request)
    if not bearer_ok(state, request):
        return _error(401)
    model = {"id": state.model, "object": "model", "created": 0, "owned_by": "vllm"}
    return web.json_response({"object": "list", "data": [model]})


def openai_app(state: LLMFakeState) -> web.Application:
    """The fake server's app; serve it with `tests.fakes.base.serve`."""
    app = web.Application()
    app[STATE] = state
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_get("/v1/models", _models)
    return app
