"""An `LLMClient` for OpenAI-compatible servers (vLLM), over our own wire client.

API: https://platform.openai.com/docs/api-reference/chat/create ; vLLM serves the same
routes under `VLLM_BASE_URL`, which ends in `/v1` (e.g. `http://vllm:8000/v1`). The
requests go through `bot.llm.openai_wire` on aiohttp (why not the SDK: see there).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import weakref
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bot.errors import LLMRejectedError, LLMUnavailableError
from bot.llm import openai_wire
from bot.llm.base import Completion, ModelBackend, OnDelta, Request, ToolCall, status_error

log = logging.getLogger(__name__)

# Connections one process keeps to one model server: a worker holds up to
# BOT_WORKER_CONCURRENCY turns, each with at most one call open.
CONNECTIONS = 2048


class OpenAICompatClient(ModelBackend):
    """Chat completions from an OpenAI-compatible server such as vLLM.

    With `keep_client`, one HTTP session (and its connection pool) per event loop, kept
    until `aclose`: a worker's loop serves every conversation of the process. Without it,
    each call opens and closes its own (an HTTP session must not outlive the loop it was
    made in, and a CLI call may run in a loop of its own).
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
        # vLLM ignores the key; an empty Bearer header is refused by some proxies.
        super().__init__(name, model, base_url, api_key or "EMPTY", timeout_s)
        self.keep_client = keep_client
        proxy, proxy_auth = openai_wire.env_proxy(base_url)
        self._endpoint = openai_wire.Endpoint(base_url, self._api_key, proxy, proxy_auth)
        self._sessions: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, aiohttp.ClientSession
        ] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"OpenAICompatClient(name={self.name!r}, base_url={self.base_url!r})"

    async def _answer(self, request: Request) -> Completion:
        http = self._session() if self.keep_client else self._new_session()
        try:
            # Each read is bounded by the session's timeout; this bounds the whole call,
            # a trickling stream too.
            async with asyncio.timeout(request.budget_s):
                if request.on_delta is None:
                    return await self._complete(http, request)
                return await self._stream(http, request, request.on_delta)
        except (openai_wire.WireError, aiohttp.ClientError, TimeoutError) as exc:
            raise to_llm_error(self.name, exc) from exc
        finally:
            if not self.keep_client:
                await http.close()

    def _session(self) -> aiohttp.ClientSession:
        """This event loop's session (made on first use)."""
        loop = asyncio.get_running_loop()
        http = self._sessions.get(loop)
        if http is None or http.closed:
            http = self._sessions[loop] = self._new_session()
        return http

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=CONNECTIONS, ssl=_ssl_context())
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=min(10.0, self.timeout_s), sock_read=self.timeout_s
        )
        # HTTPS_PROXY/NO_PROXY are honoured, as the SDK did: found once for the endpoint
        # (openai_wire.env_proxy), not by trust_env's lookup in a thread per request.
        return aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def aclose(self) -> None:
        """Close this loop's session (its connections); the next call makes a new one."""
        http = self._sessions.pop(asyncio.get_running_loop(), None)
        if http is not None:
            await http.close()

    def _body(self, request: Request, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": list(request.messages), **extra}
        if request.tools:
            body["tools"] = list(request.tools)
        return body

    async def _complete(self, http: aiohttp.ClientSession, request: Request) -> Completion:
        answer = await openai_wire.complete(http, self._endpoint, self._body(request))
        choices = answer.get("choices") or []
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise LLMUnavailableError("answer without choices", platform=self.name)
        message = choices[0].get("message") or {}
        calls = tuple(
            ToolCall(str(c.get("id") or ""), str(fn.get("name") or ""), _arguments(fn))
            for c in message.get("tool_calls") or ()
            if isinstance(c, dict)
            and c.get("type", "function") == "function"
            and isinstance(fn := c.get("function"), dict)
        )
        prompt_tokens, completion_tokens = _usage(answer)
        return Completion(
            text=_text(message.get("content")),
            tool_calls=calls,
            backend=self.name,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    async def _stream(
        self, http: aiohttp.ClientSession, request: Request, on_delta: OnDelta
    ) -> Completion:
        # Asks for a last chunk with token counts (vLLM and OpenAI both support it).
        body = self._body(request, stream_options={"include_usage": True})
        text: list[str] = []
        calls: dict[int, _PartialCall] = {}
        prompt_tokens = completion_tokens = 0
        async for chunk in openai_wire.stream(http, self._endpoint, body):
            if chunk.get("usage"):
                prompt_tokens, completion_tokens = _usage(chunk)
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or {}
                content = _text(delta.get("content"))
                if content:
                    text.append(content)
                    await on_delta(content)
                for piece in delta.get("tool_calls") or ():
                    if not isinstance(piece, dict):
                        continue
                    # A call arrives as pieces sharing one `index`: id and name first,
                    # then the JSON arguments a few characters at a time.
                    call = calls.setdefault(int(piece.get("index") or 0), _PartialCall())
                    call.id = call.id or str(piece.get("id") or "")
                    function = piece.get("function")
                    if isinstance(function, dict):
                        call.name = call.name or str(function.get("name") or "")
                        call.arguments.append(_arguments(function))
        return Completion(
            text="".join(text),
            tool_calls=tuple(calls[i].freeze() for i in sorted(calls)),
            backend=self.name,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _arguments(function: dict[str, Any]) -> str:
    arguments = function.get("arguments")
    return arguments if isinstance(arguments, str) else ""


def _usage(body: dict[str, Any]) -> tuple[int, int]:
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return 0, 0
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (
        prompt if isinstance(prompt, int) else 0,
        completion if isinstance(completion, int) else 0,
    )


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def freeze(self) -> ToolCall:
        return ToolCall(self.id, self.name, "".join(self.arguments))


def to_llm_error(name: str, exc: BaseException) -> LLMUnavailableError | LLMRejectedError:
    """Map a wire error or a timeout to the project's errors; the only place that decides.

    5xx, 408, 429, timeouts and connection failures are unavailable (try elsewhere, later);
    any other 4xx is rejected. The reason is the server's error code only (the status is a
    field): a 400's message may quote the prompt, and these errors end up in logs.
    """
    if isinstance(exc, openai_wire.WireError) and exc.status is not None:
        return status_error(exc.reason, backend=name, status=exc.status)
    if isinstance(exc, TimeoutError):  # aiohttp's read timeouts are TimeoutErrors too
        return LLMUnavailableError("timed out", platform=name)
    if isinstance(exc, aiohttp.ClientError):
        return LLMUnavailableError("connection failed", platform=name)
    # An error event inside a stream, an answer that does not parse: the server misbehaved.
    return LLMUnavailableError(f"bad answer ({exc})", platform=name)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Building a context loads the CA store (~30 ms); one shared, loop-independent
    # context for every client. Same trust as the SDK default on Linux.
    return ssl.create_default_context()
