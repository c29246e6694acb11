"""An `LLMClient` for OpenAI-compatible servers (vLLM), through the official `openai` SDK.

API: https://platform.openai.com/docs/api-reference/chat/create ; vLLM serves the same
routes under `VLLM_BASE_URL`, which ends in `/v1` (e.g. `http://vllm:8000/v1`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import weakref
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessageFunctionToolCall,
)

from bot.errors import LLMRejectedError, LLMUnavailableError
from bot.llm.base import Completion, ModelBackend, OnDelta, Request, ToolCall, status_error

log = logging.getLogger(__name__)


class OpenAICompatClient(ModelBackend):
    """Chat completions from an OpenAI-compatible server such as vLLM.

    With `keep_client`, one `AsyncOpenAI` (and its connection pool) per event loop, kept
    until `aclose`: a worker's loop serves every conversation of the process. Without it,
    each call opens and closes its own (an HTTP client must not outlive the loop it was
    made in, and a CLI call may run in a loop of its own). Requests go out
    through the SDK's `post` with our body as is: the typed `create` re-walks the whole
    prompt and every tool schema on each call, which cost more CPU than everything else
    in a turn (measured with benchmarks.worker_inflight).
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        model: str,
        api_key: str = "EMPTY",
        timeout_s: float = 30,
        *,
        keep_client: bool = False,
    ) -> None:
        # The SDK refuses an empty key; vLLM ignores it.
        super().__init__(name, model, base_url, api_key or "EMPTY", timeout_s)
        self.keep_client = keep_client
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"OpenAICompatClient(name={self.name!r}, base_url={self.base_url!r})"

    async def _answer(self, request: Request) -> Completion:
        client = self._client() if self.keep_client else self._new_client()
        try:
            # The SDK timeout bounds each read; this bounds the whole call, a trickling stream too.
            async with asyncio.timeout(request.budget_s):
                if request.on_delta is None:
                    return await self._complete(client, request)
                return await self._stream(client, request, request.on_delta)
        except (openai.OpenAIError, TimeoutError) as exc:
            raise to_llm_error(self.name, exc) from exc
        finally:
            if not self.keep_client:
                await client.close()

    def _client(self) -> openai.AsyncOpenAI:
        """This event loop's client (made on first use)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._new_client()
        return client

    def _new_client(self) -> openai.AsyncOpenAI:
        http = openai.DefaultAsyncHttpxClient(verify=_ssl_context(), timeout=self.timeout_s)
        # max_retries=0: the router falls back to the next backend; SDK retries would hide it.
        return openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self._api_key,
            timeout=self.timeout_s,
            max_retries=0,
            http_client=http,
        )

    async def aclose(self) -> None:
        """Close this loop's client (its connections); the next call makes a new one."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    def _body(self, request: Request, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": list(request.messages), **extra}
        if request.tools:
            body["tools"] = list(request.tools)
        return body

    async def _complete(self, client: openai.AsyncOpenAI, request: Request) -> Completion:
        response = await client.post(
            "/chat/completions",
            body=self._body(request),
            cast_to=ChatCompletion,
            options={"timeout": request.budget_s},
        )
        if not response.choices:
            raise LLMUnavailableError("answer without choices", platform=self.name)
        message = response.choices[0].message
        calls = tuple(
            ToolCall(c.id, c.function.name, c.function.arguments)
            for c in message.tool_calls or ()
            if isinstance(c, ChatCompletionMessageFunctionToolCall)
        )
        usage = response.usage
        return Completion(
            text=message.content or "",
            tool_calls=calls,
            backend=self.name,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )

    async def _stream(
        self, client: openai.AsyncOpenAI, request: Request, on_delta: OnDelta
    ) -> Completion:
        stream = await client.post(
            "/chat/completions",
            # Asks for a last chunk with token counts (vLLM and OpenAI both support it).
            body=self._body(request, stream=True, stream_options={"include_usage": True}),
            cast_to=ChatCompletion,
            options={"timeout": request.budget_s},
            stream=True,
            stream_cls=openai.AsyncStream[ChatCompletionChunk],
        )
        text: list[str] = []
        calls: dict[int, _PartialCall] = {}
        prompt_tokens = completion_tokens = 0
        async with stream:
            async for chunk in stream:
                if chunk.usage is not None:
                    prompt_tokens = chunk.usage.prompt_tokens
                    completion_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                        await on_delta(delta.content)
                    for piece in delta.tool_calls or ():
                        # A call arrives as pieces sharing one `index`: id and name first,
                        # then the JSON arguments a few characters at a time.
                        call = calls.setdefault(piece.index, _PartialCall())
                        call.id = call.id or piece.id or ""
                        if piece.function is not None:
                            call.name = call.name or piece.function.name or ""
                            call.arguments.append(piece.function.arguments or "")
        return Completion(
            text="".join(text),
            tool_calls=tuple(calls[i].freeze() for i in sorted(calls)),
            backend=self.name,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def freeze(self) -> ToolCall:
        return ToolCall(self.id, self.name, "".join(self.arguments))


def to_llm_error(name: str, exc: BaseException) -> LLMUnavailableError | LLMRejectedError:
    """Map an SDK exception or a timeout to the project's errors; the only place that decides.

    5xx, 408, 429, timeouts and connection failures are unavailable (try elsewhere, later);
    any other 4xx is rejected. The reason is the server's error code only (the status is a
    field): a 400's message may quote the prompt, and these errors end up in logs.
    """
    if isinstance(exc, openai.APIStatusError):
        reason = _error_code(exc.body) or type(exc).__name__
        return status_error(reason, backend=name, status=exc.status_code)
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return LLMUnavailableError("timed out", platform=name)
    if isinstance(exc, openai.APIConnectionError):
        return LLMUnavailableError("connection failed", platform=name)
    # An error event inside a stream, an answer that does not parse: the server misbehaved.
    return LLMUnavailableError(f"bad answer ({type(exc).__name__})", platform=name)


def _error_code(body: object) -> str:
    # OpenAI puts {"code", "type"} under "error" (the SDK unwraps it); vLLM puts them on top.
    if isinstance(body, dict):
        code = body.get("code") or body.get("type")
        return str(code) if code else ""
    return ""


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Building a context loads the CA store (~30 ms); one shared, loop-independent
    # context for every client. Same trust as the SDK default on Linux.
    return ssl.create_default_context()
