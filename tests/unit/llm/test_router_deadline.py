"""The router's deadline: a backend that hangs cannot spend a turn's whole budget while a
fallback remains, and the turn ends within its deadline when every backend hangs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from bot.errors import LLMUnavailableError
from bot.llm.base import ChatMessage, Completion
from bot.llm.breaker import CircuitBreaker
from bot.llm.router import PRIMARY_SHARE, LLMRouter

MESSAGES: list[ChatMessage] = [{"role": "user", "content": "在吗"}]


class Hanging:
    """A backend that never answers: it gives up only when its budget runs out."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.budgets: list[float | None] = []

    async def complete(
        self, messages: Sequence[ChatMessage], *, timeout_s: float | None = None, **_: Any
    ) -> Completion:
        self.budgets.append(timeout_s)
        await asyncio.sleep(timeout_s if timeout_s is not None else 3600)
        raise LLMUnavailableError(f"{self.name} timed out")


class Quick:
    name = "dashscope"

    async def complete(self, messages: Sequence[ChatMessage], **_: Any) -> Completion:
        return Completion(text="答案", backend=self.name)


def _router(*clients: Any) -> LLMRouter:
    breakers = {c.name: CircuitBreaker() for c in clients}
    return LLMRouter(clients, breakers=breakers.__getitem__)


async def test_a_hanging_primary_leaves_the_fallback_its_turn() -> None:
    primary = Hanging("vllm")
    started = time.monotonic()
    answer = await _router(primary, Quick()).complete(MESSAGES, timeout_s=1.0)
    elapsed = time.monotonic() - started
    assert answer.text == "答案"
    assert primary.budgets
    assert abs((primary.budgets[0] or 0) - PRIMARY_SHARE) < 0.05
    assert elapsed < 1.0


async def test_every_backend_hanging_ends_within_the_deadline() -> None:
    first, second = Hanging("vllm"), Hanging("dashscope")
    started = time.monotonic()
    try:
        await _router(first, second).complete(MESSAGES, timeout_s=1.0)
    except LLMUnavailableError:
        pass
    else:
        raise AssertionError("no backend answered, yet the router returned")
    assert time.monotonic() - started < 1.3
    assert second.budgets, "the fallback was tried"
