"""`LLMRouter`: the model backends in order of preference (vLLM, then DashScope), behind breakers.

Fallback rules, in one place:

- LLMUnavailableError (5xx, 429, timeout, connection): count a failure, try the next backend.
- LLMRejectedError with 401/403/404 (bad key, no access, wrong model or URL): the backend is
  misconfigured and will refuse every call, so count a failure (its breaker opens and it
  stops costing a round trip) and try the next: the customer must still get an answer.
- Any other LLMRejectedError (400, 413, 422: this request, e.g. too long for this model's
  context): try the next backend, which may accept it, but count nothing: the backend is healthy.
- A backend whose breaker is open is skipped. When none answers, LLMUnavailableError.

`timeout_s` is the budget for the whole call: each backend gets what is left of it (and its
own configured limit), so a hanging primary cannot use up the fallback's time twice over.

Streaming caveat: text that a backend passed to `on_delta` before failing stays sent, and
the next backend's answer follows it; `on_delta` has no way to say "start again".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from bot.errors import LLMRejectedError, LLMUnavailableError
from bot.llm.base import ChatMessage, Completion, LLMClient, OnDelta, ToolSpec
from bot.llm.breaker import CircuitBreaker, breaker_for
from bot.metrics import LLM_LATENCY, LLM_REQUESTS

log = logging.getLogger(__name__)

# Rejections that say the backend is misconfigured rather than that this request is bad.
_CONFIG_STATUSES = frozenset({401, 403, 404})


# The share of what is left of the deadline a backend may use while a fallback remains.
PRIMARY_SHARE = 0.6


class LLMRouter:
    """An `LLMClient` that asks each backend in turn until one answers."""

    name = "router"

    def __init__(
        self,
        clients: Sequence[LLMClient],
        breakers: Callable[[str], CircuitBreaker] = breaker_for,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = tuple(clients)
        self._breakers = breakers
        self._clock = clock

    def __repr__(self) -> str:
        return f"LLMRouter({', '.join(c.name for c in self.clients)})"

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] | None = None,
        timeout_s: float | None = None,
        on_delta: OnDelta | None = None,
    ) -> Completion:
        """Answer from the first backend that can; raise LLMUnavailableError when none can."""
        deadline = None if timeout_s is None else self._clock() + timeout_s
        last: LLMUnavailableError | LLMRejectedError | None = None
        for n, client in enumerate(self.clients, 1):
            remaining = None if deadline is None else deadline - self._clock()
            if remaining is not None and remaining <= 0:
                log.warning("llm budget of %.1fs spent before trying %s", timeout_s, client.name)
                break
            if remaining is not None and n < len(self.clients):
                # A hanging backend in front must not spend the whole deadline: the fallback
                # still gets its turn before the customer's answer is due.
                remaining *= PRIMARY_SHARE
            breaker = self._breakers(client.name)
            if not breaker.allow():
                log.info("llm %s skipped: circuit open", client.name)
                LLM_REQUESTS.labels(client.name, "skipped").inc()
                continue
            started = self._clock()
            try:
                completion = await client.complete(
                    messages, tools=tools, timeout_s=remaining, on_delta=on_delta
                )
            except LLMUnavailableError as exc:
                breaker.record_failure()
                self._failed(client.name, "unavailable", exc, started)
                last = exc
                continue
            except LLMRejectedError as exc:
                if exc.status in _CONFIG_STATUSES:
                    breaker.record_failure()
                self._failed(client.name, "rejected", exc, started)
                last = exc
                continue
            elapsed = self._clock() - started
            breaker.record_success()
            LLM_REQUESTS.labels(client.name, "ok").inc()
            LLM_LATENCY.labels(client.name).observe(elapsed)
            log.info(
                "llm answered by %s in %.2fs (%d+%d tokens)",
                client.name,
                elapsed,
                completion.prompt_tokens,
                completion.completion_tokens,
            )
            return completion
        raise LLMUnavailableError("all model backends failed", platform=self.name) from last

    def _failed(self, backend: str, outcome: str, exc: Exception, started: float) -> None:
        LLM_REQUESTS.labels(backend, outcome).inc()
        LLM_LATENCY.labels(backend).observe(self._clock() - started)
        log.warning("llm %s %s: %s", backend, outcome, exc)
