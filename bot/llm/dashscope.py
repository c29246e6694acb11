"""An `LLMClient` for DashScope (Qwen), through the official `dashscope` SDK.

API: https://help.aliyun.com/zh/model-studio/qwen-api-reference (text generation,
`result_format="message"`). The SDK posts `{"model", "input": {"messages"}, "parameters"}` to
`{base}/services/aigc/text-generation/generation`; `DASHSCOPE_BASE_URL`, when set, is that
`.../api/v1` base (e.g. `https://dashscope-intl.aliyuncs.com/api/v1`), else the SDK's default.

With `on_delta` the call streams: `stream=True` (the SDK sends `X-DashScope-SSE: enable`) and
`incremental_output=True`, so each SSE event carries only the new text (and tool-call pieces).

Pictures (`vision_model`, DASHSCOPE_VISION_MODEL): a request whose messages carry image parts
goes to the multimodal model through `MultiModalConversation`, which posts the same envelope
to `{base}/services/aigc/multimodal-generation/generation` with each message's content a list
of `{"image": "data:image/jpeg;base64,..."}` / `{"text": ...}` items
(https://help.aliyun.com/zh/model-studio/vision, "传入本地文件（Base64 编码）"); the answer and
its stream have the text generation's shape, with `content` a list of `{"text"}` items.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import dashscope
import requests
from dashscope.api_entities.dashscope_response import DashScopeAPIResponse
from dashscope.common.error import (
    DashScopeException,
    RequestFailure,
    ServiceUnavailableError,
    TimeoutException,
)

from bot.errors import LLMRejectedError, LLMUnavailableError
from bot.llm import images
from bot.llm.base import (
    ChatMessage,
    Completion,
    ModelBackend,
    OnDelta,
    Request,
    ToolCall,
    status_error,
)

log = logging.getLogger(__name__)


class DashScopeClient(ModelBackend):
    """Chat completions from DashScope; the blocking SDK call runs in a worker thread.

    With `on_delta` it streams: the thread reads the SSE events and hands each to the event
    loop, which passes the new text on as it comes.
    """

    def __init__(
        self,
        *,
        api_key: str,
        name: str = "dashscope",
        model: str = "qwen-plus",
        base_url: str = "",
        timeout_s: float = 30,
        vision_model: str = "",
        vision_tools: bool = True,
    ) -> None:
        super().__init__(name, model, base_url, api_key, timeout_s)
        # Asked instead of `model` when the messages carry pictures; "" : never (the router
        # then replaces pictures with text before they reach this client).
        self.vision_model = vision_model
        self.vision_tools = vision_tools

    def __repr__(self) -> str:
        return (
            f"DashScopeClient(name={self.name!r}, model={self.model!r}, "
            f"vision_model={self.vision_model!r})"
        )

    async def _answer(self, request: Request) -> Completion:
        if request.on_delta is not None:
            return await self._stream(request, request.on_delta)
        try:
            # A timed-out thread cannot be stopped; request_timeout=budget makes it give up
            # about when we do, so `asyncio.run`'s executor shutdown is not held up for long.
            async with asyncio.timeout(request.budget_s):
                response = await asyncio.to_thread(self._call, request)
        except TimeoutError as exc:
            raise to_llm_error(self.name, status=None, code="timed out") from exc
        if response.status_code != 200:
            raise to_llm_error(
                self.name,
                status=response.status_code,
                code=str(response.code or ""),
                request_id=str(response.request_id or ""),
            )
        return self._completion(response)

    def _sdk_call(self, request: Request, *, stream: bool = False) -> object:
        # incremental_output: each event carries only the new text, not all of it so far.
        extra: dict[str, Any] = {"stream": True, "incremental_output": True} if stream else {}
        if self.vision_model and images.has_pictures(request.messages):
            return _Pictures.call(
                model=self.vision_model,
                messages=[multimodal_message(m) for m in request.messages],
                api_key=self._api_key,
                result_format="message",
                tools=list(request.tools) if request.tools and self.vision_tools else None,
                base_address=self.base_url or None,
                request_timeout=request.budget_s,
                **extra,
            )
        return dashscope.Generation.call(
            model=self.model,
            # The stubs want their Message, a dict subclass: plain dicts serialise the same.
            messages=cast(Any, [_message(m) for m in request.messages]),
            api_key=self._api_key,
            result_format="message",
            tools=list(request.tools) if request.tools else None,
            base_address=self.base_url or None,
            request_timeout=request.budget_s,
            **extra,
        )

    def _call(self, request: Request) -> DashScopeAPIResponse:
        try:
            response = self._sdk_call(request)
        except (requests.RequestException, DashScopeException) as exc:
            raise self._sdk_error(exc) from exc
        if not isinstance(response, DashScopeAPIResponse):  # only a stream yields a generator
            raise to_llm_error(self.name, status=None, code="unexpected stream")
        return response

    def _sdk_error(self, exc: Exception) -> Exception:
        """The project's error for an exception from the SDK (any other is passed on as is)."""
        if isinstance(
            exc,
            requests.RequestException | RequestFailure | ServiceUnavailableError | TimeoutException,
        ):
            return to_llm_error(self.name, status=None, code=type(exc).__name__)
        if isinstance(exc, DashScopeException):
            # The SDK's own checks (no model, no messages): our request is wrong, not the service.
            return to_llm_error(self.name, status=400, code=type(exc).__name__)
        return exc

    async def _stream(self, request: Request, on_delta: OnDelta) -> Completion:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[DashScopeAPIResponse | Exception | None] = asyncio.Queue()
        stop = threading.Event()  # set when we stop listening: the thread hangs up too

        def put(item: DashScopeAPIResponse | Exception | None) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                stop.set()

        def read() -> None:
            try:
                for response in self._responses(request):
                    if stop.is_set():
                        return  # closing the generator closes the HTTP response
                    put(response)
                put(None)
            except Exception as exc:  # handed to the loop, which raises it there
                put(self._sdk_error(exc))

        partial = _Partial()
        try:
            async with asyncio.timeout(request.budget_s):
                # Not awaited: after a timeout the thread ends on its own (request_timeout).
                loop.run_in_executor(None, read)
                while (item := await events.get()) is not None:
                    if isinstance(item, Exception):
                        raise item
                    piece = self._take(item, partial)
                    if piece:
                        await on_delta(piece)
        except TimeoutError as exc:
            raise to_llm_error(self.name, status=None, code="timed out") from exc
        finally:
            stop.set()
        if not partial.finished:
            # The SSE stream ended without a last event: the connection was cut cleanly.
            raise to_llm_error(self.name, status=None, code="stream ended early")
        return partial.freeze(self.name)

    def _responses(self, request: Request) -> Iterator[DashScopeAPIResponse]:
        stream = self._sdk_call(request, stream=True)
        if isinstance(stream, DashScopeAPIResponse):  # defensive: the SDK answered at once
            yield stream
            return
        yield from cast(Iterator[DashScopeAPIResponse], stream)

    def _take(self, response: DashScopeAPIResponse, partial: _Partial) -> str:
        """Add one SSE event to `partial`; return its new text. Raise for an error event."""
        if response.status_code != 200:
            code = str(response.code or "")
            raise to_llm_error(
                self.name,
                # The SDK reads an error event's status from a "status:" line DashScope does
                # not send (it writes ":HTTP_STATUS/500"), so it says 400 for every one: the
                # code tells a busy or broken service from a bad request.
                status=_status_of(code, response.status_code),
                code=code,
                request_id=str(response.request_id or ""),
            )
        output: dict[str, Any] = response.output or {}
        choices = output.get("choices") or []
        usage: dict[str, Any] = response.usage or {}
        partial.prompt_tokens = int(usage.get("input_tokens") or partial.prompt_tokens)
        partial.completion_tokens = int(usage.get("output_tokens") or partial.completion_tokens)
        if not choices:
            return ""
        if choices[0].get("finish_reason") not in (None, "", "null"):
            partial.finished = True
        message: dict[str, Any] = choices[0].get("message") or {}
        for position, piece in enumerate(message.get("tool_calls") or ()):
            if piece.get("type", "function") == "function":
                partial.add_call(piece, position)
        text = _text(message.get("content"))
        partial.text.append(text)
        return text

    def _completion(self, response: DashScopeAPIResponse) -> Completion:
        output: dict[str, Any] = response.output or {}
        choices = output.get("choices") or []
        if not choices:
            raise to_llm_error(self.name, status=None, code="answer without choices")
        message: dict[str, Any] = choices[0].get("message") or {}
        calls = tuple(
            ToolCall(
                str(call.get("id") or ""),
                str(call.get("function", {}).get("name") or ""),
                _arguments(call.get("function", {}).get("arguments")),
            )
            for call in message.get("tool_calls") or ()
            if call.get("type", "function") == "function"
        )
        usage: dict[str, Any] = response.usage or {}
        return Completion(
            text=_text(message.get("content")),
            tool_calls=calls,
            backend=self.name,
            prompt_tokens=int(usage.get("input_tokens") or 0),
            completion_tokens=int(usage.get("output_tokens") or 0),
        )


class _Pictures(dashscope.MultiModalConversation):
    """`MultiModalConversation` without its upload step.

    The SDK uploads to DashScope's OSS every `image`/`text`/... item of a user message that
    names a file on this host (`file://...`, or a bare path that exists) and sends the URL
    instead: a customer whose message is "/etc/passwd" would have that file uploaded. Our
    pictures are always data URLs, so nothing is ever to be uploaded.
    """

    @classmethod
    def _preprocess_messages(cls, *_: Any) -> bool:  # (model, messages, api_key)
        return False


def multimodal_message(message: ChatMessage) -> dict[str, Any]:
    """An OpenAI-format message in the multimodal API's format.

    User and system content becomes a list of items: `{"text": ...}` for text and
    `{"image": <data URL>}` for each `image_url` part, in their order. Assistant and tool
    messages keep the text API's string content (with tool calls, "").
    """
    content = message.get("content")
    if message.get("role") not in ("user", "system"):
        return _message(message)
    if isinstance(content, list):
        items = [_item(p) for p in content if isinstance(p, dict)]
        return {**message, "content": [i for i in items if i]}
    return {**message, "content": [{"text": str(content or "")}]}


def _item(part: dict[str, Any]) -> dict[str, str]:
    if part.get("type") == "image_url":
        url = str((part.get("image_url") or {}).get("url") or "")
        return {"image": url} if url else {}
    return {"text": str(part.get("text") or "")}


def to_llm_error(
    name: str, *, status: int | None, code: str = "", request_id: str = ""
) -> LLMUnavailableError | LLMRejectedError:
    """Map a DashScope answer (or no answer: `status` None) to the project's errors.

    5xx, 408, 429, timeouts and connection failures are unavailable; any other 4xx
    (400 InvalidParameter, 401 InvalidApiKey, 403 AccessDenied) is rejected. The reason
    keeps the error code and request id (the status is a field), never the message, which
    may quote the prompt.
    """
    reason = code or "error"
    if request_id:  # what Alibaba support asks for
        reason += f" request_id={request_id}"
    return status_error(reason, backend=name, status=status)


# Error codes of a busy or failing service (try later or elsewhere), by their prefix.
_TRANSIENT_CODES = (
    "Throttling",
    "InternalError",
    "ServiceUnavailable",
    "ModelServiceFailed",
    "RequestTimeOut",
)


def _status_of(code: str, status: int) -> int | None:
    if status == 400 and code.startswith(_TRANSIENT_CODES):
        return 429 if code.startswith("Throttling") else None
    return status


@dataclass(slots=True)
class _Partial:
    """A streamed answer so far: text pieces, tool calls by index, token counts."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, list[str]] = field(default_factory=dict)  # [id, name, arguments...]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finished: bool = False

    def add_call(self, piece: dict[str, Any], position: int) -> None:
        # A call comes in pieces sharing an `index`: id and name first, then the arguments.
        index = int(piece.get("index", position))
        call = self.calls.setdefault(index, ["", ""])
        function = piece.get("function") or {}
        call[0] = call[0] or str(piece.get("id") or "")
        call[1] = call[1] or str(function.get("name") or "")
        arguments = function.get("arguments")
        if arguments:
            call.append(_arguments(arguments))

    def freeze(self, backend: str) -> Completion:
        calls = tuple(
            ToolCall(c[0], c[1], "".join(c[2:]) or "{}") for _, c in sorted(self.calls.items())
        )
        return Completion(
            text="".join(self.text),
            tool_calls=calls,
            backend=backend,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
        )


def _message(message: ChatMessage) -> dict[str, Any]:
    # DashScope wants a string `content`, "" beside tool_calls, where OpenAI allows null.
    if message.get("content") is None:
        return {**message, "content": ""}
    return dict(message)


def _text(content: object) -> str:
    # Plain models answer a string; multimodal ones a list of {"text": ...} parts.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _arguments(arguments: object) -> str:
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments if arguments is not None else {}, ensure_ascii=False)
