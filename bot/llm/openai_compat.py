"""An `LLMClient` for OpenAI-compatible servers (vLLM), through the official `openai` SDK.

API: https://platform.openai.com/docs/api-reference/chat/create ; vLLM serves the same
routes under `VLLM_BASE_URL`, which ends in `/v1` (e.g. `http://vllm:8000/v1`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import cast

import openai
from openai.types.chat import (
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionToolUnionParam,
)

from bot.errors import LLMRejectedError, LLMUnavailableError
from bot.llm.base import ChatMessage, Completion, OnDelta, ToolCall, ToolSpec

log = logging.getLogger(__name__)

# The 4xx answers that say "not now" rather than "never": try later, or elsewhere.
_TRANSIENT_4XX = frozenset({408, 429})


class OpenAICompatClient:
    """Chat completions from an OpenAI-compatible server such as vLLM.

    Each call opens and closes its own `AsyncOpenAI`: Celery runs every task in a fresh
    event loop (`asyncio.run`), and an HTTP client must not outlive the loop it was made in.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        model: str,
        api_key: str = "EMPTY",
        timeout_s: float = 30,
    ) -> None:
        self.name = name
        self.base_url = base_url
        self.model = model
        self._api_key = api_key or "EMPTY"  # the SDK refuses an empty key; vLLM ignores it
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"OpenAICompatClient(name={self.name!r}, base_url={self.base_url!r})"

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] | None = None,
        timeout_s: float | None = None,
        on_delta: OnDelta | None = None,
    ) -> Completion:
        """Answer `messages` within min(`timeout_s`, the client's own limit)."""
        budget = self.timeout_s if timeout_s is None else min(timeout_s, self.timeout_s)
        try:
            # The SDK timeout bounds each read; this bounds the whole call, a trickling stream too.
            async with asyncio.timeout(budget), self._open(budget) as client:
                if on_delta is None:
                    return await self._complete(client, messages, tools)
                return await self._stream(client, messages, tools, on_delta)
        except (openai.OpenAIError, TimeoutError) as exc:
            raise to_llm_error(self.name, exc) from exc

    @asynccontextmanager
    async def _open(self, timeout_s: float) -> AsyncIterator[openai.AsyncOpenAI]:
        http = openai.DefaultAsyncHttpxClient(verify=_ssl_context(), timeout=timeout_s)
        # max_retries=0: the router falls back to the next backend; SDK retries would hide that.
        async with openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self._api_key,
            timeout=timeout_s,
            max_retries=0,
            http_client=http,
        ) as client:
            yield client

    async def _complete(
        self,
        client: openai.AsyncOpenAI,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec] | None,
    ) -> Completion:
        response = await client.chat.completions.create(
            model=self.model,
            messages=cast("list[ChatCompletionMessageParam]", list(messages)),
            tools=_tools(tools),
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
        self,
        client: openai.AsyncOpenAI,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec] | None,
        on_delta: OnDelta,
    ) -> Completion:
        stream = await client.chat.completions.create(
            model=self.model,
            messages=cast("list[ChatCompletionMessageParam]", list(messages)),
            tools=_tools(tools),
            stream=True,
            # Asks for a last chunk with token counts (vLLM and OpenAI both support it).
            stream_options={"include_usage": True},
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
        status = exc.status_code
        reason = _error_code(exc.body) or type(exc).__name__
        if 400 <= status < 500 and status not in _TRANSIENT_4XX:
            return LLMRejectedError(reason, platform=name, status=status)
        return LLMUnavailableError(reason, platform=name, status=status)
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


def _tools(tools: Sequence[ToolSpec] | None) -> list[ChatCompletionToolUnionParam] | openai.Omit:
    return cast("list[ChatCompletionToolUnionParam]", list(tools)) if tools else openai.omit


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Building a context loads the CA store (~30 ms); one shared, loop-independent
    # context keeps a client per call cheap. Same trust as the SDK default on Linux.
    return ssl.create_default_context()
