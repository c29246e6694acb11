"""The OpenAI chat-completions wire protocol over aiohttp: one request, its answer or its
stream of chunks, and the server's error as status + code.

Why not the `openai` SDK here: per call it builds an httpx request, walks httpx's
connection pool (linear in the connections open: quadratic for a worker holding
hundreds of calls) and a pydantic model per streamed chunk. Measured on the same fake
server (benchmarks/README.md, Worker in-flight): 5–6 ms of CPU per streamed call with
500 calls open against 0.7 ms here — the SDK alone capped a worker near 150 calls/s.
The wire format is small and stable: a JSON body in, a JSON answer or server-sent
events (`data: {chunk}` … `data: [DONE]`) out. The tests drive the same fake server with
the official SDK too, so the fake and this client both follow the real protocol.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from aiohttp.http_exceptions import LineTooLong
from yarl import URL

# An answer or one event larger than this is not a chat completion: refused, not buffered.
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_EVENT_BYTES = 1024 * 1024
# How much of an error body is read for its code (an HTML error page can be large).
MAX_ERROR_BYTES = 64 * 1024


class WireError(Exception):
    """The server answered, but not with a usable completion (see `status`/`code`)."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and as whom to ask: `base_url` ends in `/v1` (vLLM: http://vllm:8000/v1)."""

    base_url: str
    api_key: str
    # The HTTP(S)_PROXY that applies to base_url (NO_PROXY honoured), found once by
    # `env_proxy`: a session with trust_env looks it up and reads ~/.netrc in two thread
    # hops on every request (a loaded worker's largest avoidable cost, issue 13).
    proxy: str | None = None
    proxy_auth: aiohttp.BasicAuth | None = None

    @property
    def completions_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }


def env_proxy(base_url: str) -> tuple[str | None, aiohttp.BasicAuth | None]:
    """The proxy the environment names for `base_url` and its credentials, or (None, None),
    as aiohttp's trust_env finds it per request."""
    try:
        proxy, auth = get_env_proxy_for_url(URL(base_url))
    except LookupError:
        return None, None
    return str(proxy), auth


async def complete(
    http: aiohttp.ClientSession, endpoint: Endpoint, body: dict[str, Any]
) -> dict[str, Any]:
    """POST `body` (no `stream`) and return the completion object."""
    async with http.post(
        endpoint.completions_url,
        data=_dumps(body),
        headers=endpoint.headers,
        proxy=endpoint.proxy,
        proxy_auth=endpoint.proxy_auth,
    ) as response:
        await _raise_for_status(response)
        raw = await _read_capped(response, MAX_BODY_BYTES)
    answer = _loads(raw)
    if not isinstance(answer, dict):
        raise WireError("answer is not a JSON object")
    if "error" in answer and "choices" not in answer:
        raise WireError(_error_code(answer) or "error in answer")
    return answer


async def stream(
    http: aiohttp.ClientSession, endpoint: Endpoint, body: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """POST `body` with `stream: true`; yield each chunk object until `[DONE]`.

    A stream that ends without `[DONE]` (the server died mid-answer) raises: a cut answer
    must not pass for a whole one.
    """
    async with http.post(
        endpoint.completions_url,
        data=_dumps({**body, "stream": True}),
        headers={**endpoint.headers, "Accept": "text/event-stream"},
        proxy=endpoint.proxy,
        proxy_auth=endpoint.proxy_auth,
    ) as response:
        await _raise_for_status(response)
        async for data in _events(response.content):
            if data == b"[DONE]":
                return
            chunk = _loads(data)
            if not isinstance(chunk, dict):
                raise WireError("stream event is not a JSON object")
            if "error" in chunk:
                raise WireError(f"error in stream: {_error_code(chunk) or 'unknown'}")
            yield chunk
    raise WireError("stream ended before [DONE]")


async def _events(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The `data` of each server-sent event (multi-line data joined, comments skipped)."""
    data: list[bytes] = []
    size = 0
    while True:
        try:
            line = await content.readuntil(b"\n")
        except (LineTooLong, ValueError) as exc:  # a line longer than aiohttp's buffer
            raise WireError("stream event too large") from exc
        if not line:
            break  # end of the body
        line = line.rstrip(b"\r\n")
        if not line:
            if data:
                yield b"\n".join(data)
                data, size = [], 0
            continue
        if line.startswith(b"data:"):
            piece = line[5:].removeprefix(b" ")
            size += len(piece)
            if size > MAX_EVENT_BYTES:
                raise WireError("stream event too large")
            data.append(piece)
        # "event:", "id:", "retry:" and ": comments" carry nothing we use.
    if data:
        yield b"\n".join(data)


async def _raise_for_status(response: aiohttp.ClientResponse) -> None:
    if response.status < 400:
        return
    try:
        raw = await _read_capped(response, MAX_ERROR_BYTES)
        code = _error_code(json.loads(raw))
    except (WireError, ValueError, aiohttp.ClientPayloadError):
        code = ""
    raise WireError(code or f"HTTP {response.status}", status=response.status)


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    if response.content_length is not None and response.content_length > limit:
        raise WireError(f"answer larger than {limit} bytes")
    parts: list[bytes] = []
    size = 0
    async for part in response.content.iter_chunked(64 * 1024):
        size += len(part)
        if size > limit:
            raise WireError(f"answer larger than {limit} bytes")
        parts.append(part)
    return b"".join(parts)


def _error_code(body: object) -> str:
    """The error's code: OpenAI nests {"code", "type"} under "error", vLLM puts them on top.

    Only the code: the message may quote the prompt, and errors end up in logs.
    """
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if isinstance(body, dict):
        code = body.get("code") or body.get("type")
        return str(code)[:100] if code else ""
    return ""


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise WireError("answer is not JSON") from exc
