"""A fake DashScope text-generation endpoint, in the JSON the `dashscope` SDK sends and reads.

The SDK, given `base_address=f"{url}/api/v1"`, posts `{"model", "input": {"messages"},
"parameters": {"result_format", "tools", ...}}` to
`/api/v1/services/aigc/text-generation/generation` with `Authorization: Bearer <key>`.
Answers: `{"request_id", "output": {"choices": [{"message", "finish_reason"}]}, "usage":
{"input_tokens", "output_tokens", "total_tokens"}}`; errors: `{"code", "message",
"request_id"}` with the HTTP status (401 InvalidApiKey, 429 Throttling, 500 InternalError).
Reference: https://help.aliyun.com/zh/model-studio/error-code

Streaming (`X-DashScope-SSE: enable`, as the SDK sends for `stream=True`): SSE events of
`id:<n>`, `event:result`, `:HTTP_STATUS/200`, `data:<the answer's JSON so far>`; with
`parameters.incremental_output` each event's `content` is only the new text (else the whole
text so far); `finish_reason` is "null" until the last event; tool calls come as pieces
(`index`, `id` and name first, then the arguments). An error mid-stream is an `event:error`
with `:HTTP_STATUS/<status>` and `{"code", "message", "request_id"}` as data, and ends it.
Reference: https://help.aliyun.com/zh/model-studio/qwen-api-reference (stream, incremental_output).

The multimodal endpoint (`MultiModalConversation`, `/api/v1/services/aigc/multimodal-generation/
generation`) takes the same envelope for `state.vision_model`; a user or system message's
`content` is a list of one-key items, `{"text": ...}` or `{"image": <URL>}` (a base64 data URL
of a picture here, as the bot sends; anything else is a 400), and the answer's `content` is
a list of `{"text": ...}` items, streamed the same way. `pictures_received(messages)` gives the
bytes of each picture a request carried.
Reference: https://help.aliyun.com/zh/model-studio/vision (Base64 input, streaming).

Control it like the OpenAI fake (`LLMFakeState`): `script(...)`, `fail_next(n, status=429)`,
`delay_s`, `chunk_chars`, `chunk_delay_s`, `drop_after_chunks` (connection cut mid-stream),
`error_after_chunks` with `stream_error_status` (an error event mid-stream),
`matching(GENERATION_PATH)`. Set `state.api_key` to the key clients must send.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes.base import record
from tests.fakes.openai_server import (
    STATE,
    LLMFakeState,
    ScriptedReply,
    bearer_ok,
    count_tokens,
    image_bytes,
    pause,
    prompt_tokens,
    tool_call_id,
    tool_protocol_problem,
)

BASE_PATH = "/api/v1"
GENERATION_PATH = f"{BASE_PATH}/services/aigc/text-generation/generation"
MULTIMODAL_PATH = f"{BASE_PATH}/services/aigc/multimodal-generation/generation"

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("InvalidParameter", "Invalid parameter."),
    401: ("InvalidApiKey", "Invalid API-key provided."),
    403: ("AccessDenied", "Access denied."),
    429: ("Throttling", "Requests throttling triggered."),
    500: (
        "InternalError",
        "An internal error has occured, please try again later or contact service support.",
    ),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
}


def error_body(status: int, request_id: str, message: str | None = None) -> dict[str, Any]:
    """A DashScope error body: `{"code", "message", "request_id"}`."""
    code, default = _ERRORS.get(status, ("InternalError", "Error."))
    return {"code": code, "message": message or default, "request_id": request_id}


def multimodal_problem(messages: list[Any]) -> str | None:
    """How the multimodal API would refuse `messages`' content; None when it is fine."""
    for i, m in enumerate(messages):
        content = m.get("content") if isinstance(m, dict) else None
        if not isinstance(m, dict) or m.get("role") not in ("user", "system"):
            continue
        if not isinstance(content, list):
            return f"messages[{i}].content must be a list of items"
        for item in content:
            if not isinstance(item, dict) or len(item) != 1:
                return f"messages[{i}].content: each item has one key"
            ((key, value),) = item.items()
            if key == "text" and isinstance(value, str):
                continue
            if key != "image" or m.get("role") != "user":
                return f"messages[{i}].content: unknown item {key!r}"
            if not isinstance(value, str) or not image_bytes(value):
                return f"messages[{i}].content: image is not a base64 data URL of a picture"
    return None


def pictures_received(messages: list[Any]) -> list[bytes]:
    """Every picture of a multimodal request's `messages`, in order."""
    return [
        image_bytes(item["image"])
        for m in messages
        if isinstance(m, dict) and isinstance(m.get("content"), list)
        for item in m["content"]
        if isinstance(item, dict) and isinstance(item.get("image"), str)
    ]


def _text_of(messages: list[Any]) -> int:
    # One token per character of text, strings and {"text"} items alike; a picture is 0.
    return prompt_tokens(messages) + sum(
        count_tokens(item["text"])
        for m in messages
        if isinstance(m, dict) and isinstance(m.get("content"), list)
        for item in m["content"]
        if isinstance(item, dict) and isinstance(item.get("text"), str)
    )


async def _generation(request: web.Request) -> web.StreamResponse:
    return await _answer(request, multimodal=False)


async def _multimodal(request: web.Request) -> web.StreamResponse:
    return await _answer(request, multimodal=True)


async def _answer(request: web.Request, *, multimodal: bool) -> web.StreamResponse:
    state = request.app[STATE]
    rec = await record(state, request)
    request_id = f"req-{len(state.requests)}"
    await pause(request, state.delay_s)
    failure = state.take_failure()
    if failure is not None:
        await pause(request, failure.delay_s)
        if failure.status >= 400:  # below 400: only slow, then the normal answer
            body = (
                failure.body if failure.body is not None else error_body(failure.status, request_id)
            )
            return web.json_response(body, status=failure.status)
    if not bearer_ok(state, request):
        return web.json_response(error_body(401, request_id), status=401)
    body = rec.json
    messages = ((body or {}).get("input") or {}).get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages:
        return web.json_response(
            error_body(400, request_id, "Input should be a valid list: input.messages"), status=400
        )
    if body.get("model") != (state.vision_model if multimodal else state.model):
        return web.json_response(error_body(400, request_id, "Model not exist."), status=400)
    parameters = body.get("parameters") or {}
    problem = tool_protocol_problem(messages, null_content=False)
    if problem is None:
        problem = multimodal_problem(messages) if multimodal else _text_problem(messages)
    if problem is not None:
        return web.json_response(error_body(400, request_id, problem), status=400)
    call_no, reply = state.next_reply(messages)
    if reply.error:
        return web.json_response(error_body(reply.error, request_id), status=reply.error)
    usage = {
        "input_tokens": _text_of(messages),
        "output_tokens": count_tokens(reply.text),
    }
    if multimodal:
        usage["image_tokens"] = 0
    usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
    finish = "tool_calls" if reply.tool_calls else "stop"
    if request.headers.get("X-DashScope-SSE") == "enable":
        return await _stream(
            request, state, request_id, (call_no, reply), usage, (parameters, multimodal)
        )
    if parameters.get("result_format") != "message" and not multimodal:
        # The legacy "text" format: no choices, no tool calls.
        output: dict[str, Any] = {"text": reply.text, "finish_reason": finish}
    else:
        text: Any = [{"text": reply.text}] if multimodal else reply.text
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "function": {"name": c.name, "arguments": c.arguments_json()},
                    "index": i,
                    "id": tool_call_id(call_no, i, c),
                    "type": "function",
                }
                for i, c in enumerate(reply.tool_calls)
            ]
        output = {"choices": [{"finish_reason": finish, "message": message}]}
    return web.json_response({"request_id": request_id, "output": output, "usage": usage})


async def _stream(
    request: web.Request,
    state: LLMFakeState,
    request_id: str,
    numbered: tuple[int, ScriptedReply],
    usage: dict[str, int],
    asked: tuple[dict[str, Any], bool],
) -> web.StreamResponse:
    call_no, reply = numbered
    parameters, multimodal = asked
    incremental = bool(parameters.get("incremental_output"))
    size = max(1, state.chunk_chars)
    pieces: list[dict[str, Any]] = [
        {"content": reply.text[i : i + size]} for i in range(0, len(reply.text), size)
    ]
    for index, call in enumerate(reply.tool_calls):
        head = {"index": index, "id": tool_call_id(call_no, index, call), "type": "function"}
        args = call.arguments_json()
        pieces.append({"content": "", "tool_calls": [{**head, "function": {"name": call.name}}]})
        pieces += [
            {
                "content": "",
                "tool_calls": [
                    {"index": index, "function": {"name": "", "arguments": args[i : i + size]}}
                ],
            }
            for i in range(0, len(args), size)
        ]
    finish = "tool_calls" if reply.tool_calls else "stop"
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream;charset=UTF-8",
            "X-DashScope-Request-Id": request_id,
        }
    )
    await response.prepare(request)
    so_far = ""
    try:
        for sent, piece in enumerate([*pieces, {"content": ""}]):
            if sent == state.drop_after_chunks and request.transport is not None:
                request.transport.abort()
                return response
            if sent == state.error_after_chunks:
                status = state.stream_error_status
                await response.write(
                    _event(sent + 1, "error", status, error_body(status, request_id))
                )
                await response.write_eof()
                return response
            so_far += piece["content"]
            message = {"role": "assistant", **piece}
            if not incremental:
                message["content"] = so_far
            if multimodal:  # the multimodal API answers a list of {"text"} items
                message["content"] = [{"text": message["content"]}]
            last = sent == len(pieces)
            data = {
                "output": {
                    "choices": [{"message": message, "finish_reason": finish if last else "null"}]
                },
                "usage": {**usage, "output_tokens": count_tokens(so_far)},
                "request_id": request_id,
            }
            await response.write(_event(sent + 1, "result", 200, data))
            await pause(request, state.chunk_delay_s)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client gave up (its timeout)
    return response


def _event(number: int, kind: str, status: int, data: dict[str, Any]) -> bytes:
    # No space after the colons, as DashScope writes them.
    return (
        f"id:{number}\nevent:{kind}\n:HTTP_STATUS/{status}\n"
        f"data:{json.dumps(data, ensure_ascii=False)}\n\n"
    ).encode()


def dashscope_app(state: LLMFakeState) -> web.Application:
    """The fake's app; clients use `base_url=f"{url}{BASE_PATH}"`."""
    app = web.Application()
    app[STATE] = state
    app.router.add_post(GENERATION_PATH, _generation)
    app.router.add_post(MULTIMODAL_PATH, _multimodal)
    return app


def _text_problem(messages: list[Any]) -> str | None:
    # The text models take string content only: a picture sent there is a 400.
    for i, m in enumerate(messages):
        if isinstance(m, dict) and not isinstance(m.get("content"), str):
            return f"messages[{i}].content must be a string"
    return None
