"""A cap on the decoders one worker process runs at once (ffmpeg, SILK, file parsers).

Each decode is a child process (or a CPU-bound thread) of a few hundred MB at worst; a burst
of voice messages and files must not fork one per message. The worker runs each task in its
own thread with its own event loop (workers/tasks.py), so an `asyncio.Semaphore`, which
belongs to one loop, cannot be the cap: `Slots` is shared by every thread and loop of the
process. A waiter is woken on its own loop; one that gives up (its wait is over, or it was
cancelled) never takes a slot with it.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.settings import Settings

_WAITING, _GRANTED, _GONE = "waiting", "granted", "gone"


class SlotsBusyError(TimeoutError):
    """No slot came free within the wait."""


@dataclass(slots=True)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    state: str = _WAITING


class Slots:
    """At most `limit` holders at once across the threads and event loops of this process."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._held = 0
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()

    @property
    def held(self) -> int:
        with self._lock:
            return self._held

    @asynccontextmanager
    async def hold(self, wait_s: float) -> AsyncIterator[None]:
        """Hold a slot for the block; SlotsBusyError when none comes free within `wait_s`."""
        await self._acquire(wait_s)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, wait_s: float) -> None:
        with self._lock:
            if self._held < self.limit and not self._waiters:
                self._held += 1
                return
            waiter = _Waiter(asyncio.get_running_loop(), asyncio.get_running_loop().create_future())
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), wait_s)
        except BaseException as exc:
            with self._lock:
                granted = waiter.state == _GRANTED
                waiter.state = _GONE
                if not granted:
                    self._waiters.remove(waiter)
            if granted:  # handed over just as we gave up: pass it on
                self._release()
            if isinstance(exc, TimeoutError):
                raise SlotsBusyError(f"no decoder free within {wait_s:g} s") from None
            raise

    def _release(self) -> None:
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                try:
                    waiter.loop.call_soon_threadsafe(_wake, waiter.future)
                except RuntimeError:  # its loop is closed: nobody waits there any more
                    waiter.state = _GONE
                    continue
                waiter.state = _GRANTED  # the slot goes straight to it: `_held` is unchanged
                return
            self._held -= 1


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_POOLS: dict[int, Slots] = {}
_POOLS_LOCK = threading.Lock()


def decoders(settings: Settings) -> Slots:
    """This process's decoder slots (BOT_DECODE_CONCURRENCY of them)."""
    limit = settings.core.decode_concurrency
    with _POOLS_LOCK:
        pool = _POOLS.get(limit)
        if pool is None:
            pool = _POOLS[limit] = Slots(limit)
        return pool
