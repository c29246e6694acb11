"""A Celery pool that runs every task as a greenlet on the worker's one event loop.

Celery stays the durable queue and the unit of acknowledgement: the consumer fetches up to
`concurrency` messages and hands each to this pool, and a message is acknowledged when its
task returns (acks_late). What changes is what a task in flight costs: the threads pool
gives each one a thread and a fresh event loop; here each is a greenlet whose waits
(`workers.greenlets.wait_for`) are coroutines on one shared loop, so a process holds
thousands of slow model calls in flight with one thread. Acknowledgements run in two
helper threads so the loop never waits on the broker.

Select it with `bot worker` (it always does) or `celery worker -P workers.pool:AsyncPool`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from celery.concurrency.base import BasePool, apply_target

from workers import greenlets
from workers.loop import LoopThread

log = logging.getLogger(__name__)

SHUTDOWN_WAIT_S = 30.0  # tasks in flight at a warm shutdown get this long to finish


class _ApplyResult:
    def __init__(self, future: concurrent.futures.Future[None]) -> None:
        self.future = future

    def get(self, timeout: float | None = None) -> None:
        self.future.result(timeout)

    def wait(self, timeout: float | None = None) -> None:
        concurrent.futures.wait([self.future], timeout)


class AsyncPool(BasePool):
    """Tasks as greenlets on one event loop thread (see the module docstring)."""

    body_can_be_buffer = True
    signal_safe = False

    def on_start(self) -> None:
        self.loop_thread = LoopThread("bot-worker-loop")
        self.loop_thread.start()
        self._callbacks = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="bot-ack"
        )
        self._in_flight: set[concurrent.futures.Future[None]] = set()
        self._lock = threading.Lock()

    def on_apply(  # type: ignore[override]  # celery-types declares (*args, **kwargs) -> None
        self,
        target: Callable[..., Any],
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        callback: Callable[..., Any] | None = None,
        accept_callback: Callable[..., Any] | None = None,
        **_: Any,
    ) -> _ApplyResult:
        def done(result: Any) -> None:
            # Acknowledging talks to the broker: never on the loop.
            if callback is not None:
                self._callbacks.submit(callback, result)

        async def job() -> None:
            await greenlets.run(apply_target, target, args, kwargs, done, accept_callback)

        future = self.loop_thread.submit(job())
        with self._lock:
            self._in_flight.add(future)
        future.add_done_callback(self._finished)
        return _ApplyResult(future)

    def _finished(self, future: concurrent.futures.Future[None]) -> None:
        with self._lock:
            self._in_flight.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("worker task failed outside its handler", exc_info=future.exception())

    def on_stop(self) -> None:
        deadline = time.monotonic() + SHUTDOWN_WAIT_S
        with self._lock:
            waiting = list(self._in_flight)
        concurrent.futures.wait(waiting, max(0.0, deadline - time.monotonic()))
        self._close()

    def on_terminate(self) -> None:
        self._close()

    def _close(self) -> None:
        from workers import runtime  # the tasks' shared clients live on this loop

        try:
            self.loop_thread.run(runtime.close(), timeout_s=10)
        except Exception:
            log.exception("closing the worker's clients failed")
        self.loop_thread.stop()
        self._callbacks.shutdown(wait=True)

    def _get_info(self) -> dict[str, Any]:
        info: dict[str, Any] = super()._get_info()  # type: ignore[misc]  # missing in the stubs
        with self._lock:
            in_flight = len(self._in_flight)
        info.update({"max-concurrency": self.limit, "in-flight": in_flight})
        return info

    @property
    def num_processes(self) -> int:
        return int(self.limit or 0)
