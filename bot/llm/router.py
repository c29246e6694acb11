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

Streaming: when a backend fails after passing text to `on_delta`, the router passes
`STREAM_RESTART` before anything else, so the consumer drops that half answer and shows the
next backend's answer alone (never the two run together). Not buffering instead: the
customer sees the primary's first words as soon as they come, which is the point of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence

from bot.domain import STREAM_RESTART
from bot.errors import LLMRejectedError, LLMUnavailableError
from bot.llm import images
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
        *,
        sees_images: Collection[str] = (),
    ) -> None:
        self.clients = tuple(clients)
        # The backends configured with a vision model (VLLM_VISION, DASHSCOPE_VISION_MODEL:
        # Settings.vision_backends); the others are asked with each picture replaced by
        # "[图片]" (bot/llm/images.py).
        self.sees_images = frozenset(sees_images)
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
        blind = images.text_only(messages) if images.has_pictures(messages) else messages
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
            sink = _Watched(on_delta)
            try:
                completion = await client.complete(
                    messages if client.name in self.sees_images else blind,
                    tools=tools,
                    timeout_s=remaining,
                    on_delta=sink.forward,
                )
            except LLMUnavailableError as exc:
                breaker.record_failure()
                self._failed(client.name, "unavailable", exc, started)
                last = exc
                await sink.void()
                continue
            except LLMRejectedError as exc:
                if exc.status in _CONFIG_STATUSES:
                    breaker.record_failure()
                self._failed(client.name, "rejected", exc, started)
                last = exc
                await sink.void()
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


class _Watched:
    """An `on_delta` that remembers whether this backend streamed anything."""

    def __init__(self, on_delta: OnDelta | None) -> None:
        self._on_delta = on_delta
        self.streamed = False
        # None when there is no consumer: the backend then does not stream at all.
        self.forward: OnDelta | None = None if on_delta is None else self._forward

    async def _forward(self, piece: str) -> None:
        self.streamed = self.streamed or bool(piece)
        if self._on_delta is not None:
            await self._on_delta(piece)

    async def void(self) -> None:
        """Tell the consumer that what this backend streamed does not count."""
        if self._on_delta is not None and self.streamed:
            self.streamed = False
            await self._on_delta(STREAM_RESTART)
