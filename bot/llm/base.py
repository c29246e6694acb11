"""What every model backend offers: `LLMClient.complete` on OpenAI-format messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.domain import OnDelta

__all__ = ["ChatMessage", "Completion", "LLMClient", "OnDelta", "ToolCall", "ToolSpec"]

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
