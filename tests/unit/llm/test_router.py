"""The router's fallback order and rules, with small in-test backends (protocol doubles)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from prometheus_client import REGISTRY

from bot.domain import STREAM_RESTART
from bot.errors import LLMRejectedError, LLMUnavailableError
from bot.llm.base import ChatMessage, Completion, OnDelta, ToolSpec
from bot.llm.breaker import BreakerState, CircuitBreaker
from bot.llm.router import PRIMARY_SHARE, LLMRouter

MESSAGES: list[ChatMessage] = [{"role": "user", "content": "hi"}]


class Backend:
    """Answers with its name, or raises each queued error first."""

    def __init__(self, name: str, *errors: Exception) -> None:
        self.name = name
        self.errors = list(errors)
        self.timeouts: list[float | None] = []

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] | None = None,
        timeout_s: float | None = None,
        on_delta: OnDelta | None = None,
    ) -> Completion:
        self.timeouts.append(timeout_s)
        if self.errors:
            raise self.errors.pop(0)
        if on_delta is not None:
            await on_delta(self.name)
        return Completion(text=f"from {self.name}", backend=self.name)


class Breakers:
    """A fresh registry per test, so no breaker state leaks between tests."""

    def __init__(self, threshold: int = 3) -> None:
        self.threshold = threshold
        self.by_name: dict[str, CircuitBreaker] = {}

    def __call__(self, name: str) -> CircuitBreaker:
        return self.by_name.setdefault(name, CircuitBreaker(failure_threshold=self.threshold))


def _count(backend: str, outcome: str) -> float:
    labels = {"backend": backend, "outcome": outcome}
    return REGISTRY.get_sample_value("bot_llm_requests_total", labels) or 0.0


def unavailable(name: str, status: int | None = 503) -> LLMUnavailableError:
    return LLMUnavailableError("down", platform=name, status=status)


def rejected(name: str, status: int) -> LLMRejectedError:
    return LLMRejectedError("no", platform=name, status=status)


async def test_first_backend_answers() -> None:
    first, second = Backend("a"), Backend("b")
    completion = await LLMRouter([first, second], breakers=Breakers()).complete(MESSAGES)
    assert completion.backend == "a"
    assert second.timeouts == []


async def test_unavailable_falls_through_in_order() -> None:
    a, b, c = Backend("a", unavailable("a")), Backend("b", unavailable("b")), Backend("c")
    completion = await LLMRouter([a, b, c], breakers=Breakers()).complete(MESSAGES)
    assert completion.backend == "c"
    assert (len(a.timeouts), len(b.timeouts), len(c.timeouts)) == (1, 1, 1)


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_misconfigured_backend_falls_back_and_counts(status: int) -> None:
    breakers = Breakers(threshold=1)
    primary, secondary = Backend("a", rejected("a", status)), Backend("b")
    completion = await LLMRouter([primary, secondary], breakers=breakers).complete(MESSAGES)
    assert completion.backend == "b"
    assert breakers("a").state is BreakerState.OPEN


@pytest.mark.parametrize("status", [400, 413, 422])
async def test_bad_request_falls_back_without_blaming_the_backend(status: int) -> None:
    breakers = Breakers(threshold=1)
    primary, secondary = Backend("a", rejected("a", status)), Backend("b")
    completion = await LLMRouter([primary, secondary], breakers=breakers).complete(MESSAGES)
    assert completion.backend == "b"
    assert breakers("a").state is BreakerState.CLOSED


async def test_all_failing_raises_unavailable_chained_to_the_last_error() -> None:
    last = rejected("b", 401)
    router = LLMRouter([Backend("a", unavailable("a")), Backend("b", last)], breakers=Breakers())
    with pytest.raises(LLMUnavailableError, match="all model backends failed") as info:
        await router.complete(MESSAGES)
    assert info.value.__cause__ is last


async def test_no_backends_raises_unavailable() -> None:
    with pytest.raises(LLMUnavailableError, match="all model backends failed"):
        await LLMRouter([], breakers=Breakers()).complete(MESSAGES)


async def test_open_breaker_skips_the_backend() -> None:
    breakers = Breakers(threshold=2)
    primary = Backend("a", unavailable("a"), unavailable("a"))
    secondary = Backend("b")
    router = LLMRouter([primary, secondary], breakers=breakers)
    skipped = _count("a", "skipped")
    for _ in range(4):
        assert (await router.complete(MESSAGES)).backend == "b"
    assert len(primary.timeouts) == 2  # after two failures, no more calls
    assert _count("a", "skipped") == skipped + 2


async def test_success_closes_the_breaker_again() -> None:
    breakers = Breakers(threshold=3)
    primary = Backend("a", unavailable("a"), unavailable("a"))
    router = LLMRouter([primary, Backend("b")], breakers=breakers)
    await router.complete(MESSAGES)
    await router.complete(MESSAGES)
    assert (await router.complete(MESSAGES)).backend == "a"
    assert breakers("a").state is BreakerState.CLOSED


async def test_budget_is_shared_across_backends() -> None:
    now = [100.0]

    class SlowDown(Backend):
        async def complete(self, messages, *, tools=None, timeout_s=None, on_delta=None):
            now[0] += 7  # this backend used 7 s of the budget before failing
            return await super().complete(
                messages, tools=tools, timeout_s=timeout_s, on_delta=on_delta
            )

    primary, secondary = SlowDown("a", unavailable("a", None)), Backend("b")
    router = LLMRouter([primary, secondary], breakers=Breakers(), clock=lambda: now[0])
    await router.complete(MESSAGES, timeout_s=10)
    # While a fallback remains, the backend in front gets its share of the deadline only.
    assert primary.timeouts == [pytest.approx(10 * PRIMARY_SHARE)]
    assert secondary.timeouts == [pytest.approx(3)]


async def test_spent_budget_stops_before_the_next_backend() -> None:
    now = [100.0]

    class Hang(Backend):
        # Overruns its own budget (a client that does not honour its timeout) and the turn's.
        async def complete(self, messages, *, tools=None, timeout_s=None, on_delta=None):
            now[0] += 5
            raise unavailable(self.name, None)

    secondary = Backend("b")
    router = LLMRouter([Hang("a"), secondary], breakers=Breakers(), clock=lambda: now[0])
    with pytest.raises(LLMUnavailableError):
        await router.complete(MESSAGES, timeout_s=5)
    assert secondary.timeouts == []


async def test_deltas_come_from_the_answering_backend() -> None:
    seen: list[str] = []

    async def on_delta(piece: str) -> None:
        seen.append(piece)

    router = LLMRouter([Backend("a", unavailable("a")), Backend("b")], breakers=Breakers())
    await router.complete(MESSAGES, on_delta=on_delta)
    assert seen == ["b"]


class HalfThenFail(Backend):
    """Streams part of an answer, then fails (a model server dying mid-answer)."""

    async def complete(self, messages, *, tools=None, timeout_s=None, on_delta=None):
        if on_delta is not None:
            await on_delta(f"half of {self.name}")
        raise self.errors.pop(0)


async def test_a_fallback_after_streamed_text_restarts_the_stream() -> None:
    seen: list[str] = []

    async def on_delta(piece: str) -> None:
        seen.append(piece)

    rejected = LLMRejectedError("too long", platform="b", status=400)
    router = LLMRouter(
        [HalfThenFail("a", unavailable("a")), HalfThenFail("b", rejected), Backend("c")],
        breakers=Breakers(),
    )
    completion = await router.complete(MESSAGES, on_delta=on_delta)
    assert seen == ["half of a", STREAM_RESTART, "half of b", STREAM_RESTART, "c"]
    assert completion.backend == "c"

    # Nobody answers: the half answer is still taken back before the error.
    seen.clear()
    router = LLMRouter([HalfThenFail("a", unavailable("a"))], breakers=Breakers())
    with pytest.raises(LLMUnavailableError):
        await router.complete(MESSAGES, on_delta=on_delta)
    assert seen == ["half of a", STREAM_RESTART]


async def test_unexpected_exceptions_are_not_swallowed() -> None:
    router = LLMRouter([Backend("a", RuntimeError("bug")), Backend("b")], breakers=Breakers())
    with pytest.raises(RuntimeError, match="bug"):
        await router.complete(MESSAGES)
