"""An `LLMClient` for DashScope (Qwen), through the official `dashscope` SDK.

API: https://help.aliyun.com/zh/model-studio/qwen-api-reference (text generation,
`result_format="message"`). The SDK posts `{"model", "input": {"messages"}, "parameters"}` to
`{base}/services/aigc/text-generation/generation`; `DASHSCOPE_BASE_URL`, when set, is that
`.../api/v1` base (e.g. `https://dashscope-intl.aliyuncs.com/api/v1`), else the SDK's default.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, cast

import dashscope
import requests
from dashscope.api_entities.dashscope_response import GenerationResponse
from dashscope.common.error import (
    DashScopeException,
    RequestFailure,
    ServiceUnavailableError,
    TimeoutException,
)

from bot.errors import LLMRejectedError, LLMUnavailableError
from bot.llm.base import ChatMessage, Completion, ModelBackend, Request, ToolCall, status_error

log = logging.getLogger(__name__)


class DashScopeClient(ModelBackend):
    """Chat completions from DashScope; the blocking SDK call runs in a worker thread.

    No streaming: with `on_delta`, the whole text is passed to it once, at the end.
    """

    def __init__(
        self,
        *,
        api_key: str,
        name: str = "dashscope",
        model: str = "qwen-plus",
        base_url: str = "",
        timeout_s: float = 30,
    ) -> None:
        super().__init__(name, model, base_url, api_key, timeout_s)

    def __repr__(self) -> str:
        return f"DashScopeClient(name={self.name!r}, model={self.model!r})"

    async def _answer(self, request: Request) -> Completion:
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
        completion = self._completion(response)
        if request.on_delta is not None and completion.text:
            await request.on_delta(completion.text)
        return completion

    def _call(self, request: Request) -> GenerationResponse:
        try:
            response = dashscope.Generation.call(
                model=self.model,
                # The stubs want their Message, a dict subclass: plain dicts serialise the same.
                messages=cast(Any, [_message(m) for m in request.messages]),
                api_key=self._api_key,
                result_format="message",
                tools=list(request.tools) if request.tools else None,
                base_address=self.base_url or None,
                request_timeout=request.budget_s,
            )
        except requests.RequestException as exc:
            raise to_llm_error(self.name, status=None, code=type(exc).__name__) from exc
        except (RequestFailure, ServiceUnavailableError, TimeoutException) as exc:
            raise to_llm_error(self.name, status=None, code=type(exc).__name__) from exc
        except DashScopeException as exc:
            # The SDK's own checks (no model, no messages): our request is wrong, not the service.
            raise to_llm_error(self.name, status=400, code=type(exc).__name__) from exc
        if not isinstance(response, GenerationResponse):  # only a streaming call yields a generator
            raise to_llm_error(self.name, status=None, code="unexpected stream")
        return response

    def _completion(self, response: GenerationResponse) -> Completion:
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
