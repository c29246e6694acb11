"""What every model backend offers: `LLMClient.complete` on OpenAI-format messages."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.domain import OnDelta
from bot.errors import LLMRejectedError, LLMUnavailableError

__all__ = [
    "ChatMessage",
    "Completion",
    "LLMClient",
    "ModelBackend",
    "OnDelta",
    "Request",
    "ToolCall",
    "ToolSpec",
    "status_error",
]

ChatMessage = dict[str, Any]  # OpenAI chat format: {"role": ..., "content": ..., ...}
ToolSpec = dict[str, Any]  # OpenAI tools format: {"type": "function", "function": {...}}


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call the model asked for; `arguments` is the JSON text it produced."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Completion:
    """A model's answer: text and/or tool calls, with the backend that produced it."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    backend: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0


class LLMClient(Protocol):
    """A chat-completion backend. Raises LLMUnavailableError or LLMRejectedError."""

    name: str

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] | None = None,
        timeout_s: float | None = None,
        on_delta: OnDelta | None = None,
    ) -> Completion:
        """Answer `messages`; with `on_delta`, stream text pieces to it as they arrive."""
        ...


@dataclass(frozen=True, slots=True)
class Request:
    """One `complete` call as a backend sees it: the prompt, and the seconds it may take."""

    messages: Sequence[ChatMessage]
    tools: Sequence[ToolSpec] | None
    on_delta: OnDelta | None
    budget_s: float


class ModelBackend(ABC):
    """An `LLMClient` for one model server through its SDK (vLLM, DashScope).

    Each call gets the caller's budget, capped by the backend's own `timeout_s`.
    """

    def __init__(
        self, name: str, model: str, base_url: str, api_key: str, timeout_s: float
    ) -> None:
        self.name = name
        self.model = model
        self.base_url = base_url
        self._api_key = api_key
        self.timeout_s = timeout_s

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] | None = None,
        timeout_s: float | None = None,
        on_delta: OnDelta | None = None,
    ) -> Completion:
        """Answer `messages` within min(`timeout_s`, the backend's own limit)."""
        budget = self.timeout_s if timeout_s is None else min(timeout_s, self.timeout_s)
        return await self._answer(Request(messages, tools, on_delta, budget))

    @abstractmethod
    async def _answer(self, request: Request) -> Completion:
        """Answer `request` within its budget; raise LLMUnavailableError or LLMRejectedError."""


# The 4xx answers that say "not now" rather than "never": try later, or elsewhere.
_TRANSIENT_4XX = frozenset({408, 429})


def status_error(
    reason: str, *, backend: str, status: int | None
) -> LLMUnavailableError | LLMRejectedError:
    """The error for a failed call, by HTTP status (None: no answer at all).

    5xx, 408, 429 and no answer are unavailable (try elsewhere, later); any other 4xx is
    rejected (a bad key, model or request). `reason` must not quote the prompt: it is logged.
    """
    if status is not None and 400 <= status < 500 and status not in _TRANSIENT_4XX:
        return LLMRejectedError(reason, platform=backend, status=status)
    return LLMUnavailableError(reason, platform=backend, status=status)
