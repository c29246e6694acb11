"""Long-connection replicas (`run_dingtalk` / `run_feishu`) started by a test, stopped after it.

A replica that does not stop within the grace period fails the teardown with its stack, so a
hang names the line it hangs on instead of a bare TimeoutError.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Coroutine
from typing import Any

STOP_GRACE_S = 10.0

RunReplica = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class Streams:
    """Replicas of one long connection, each with its own stop event."""

    def __init__(self, run: Callable[[Any, asyncio.Event], Coroutine[Any, Any, None]]) -> None:
        self._run = run
        self.running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    def start(self, settings: Any) -> tuple[asyncio.Event, asyncio.Task[None]]:
        stop = asyncio.Event()
        task = asyncio.create_task(self._run(settings, stop), name=f"replica-{len(self.running)}")
        self.running.append((stop, task))
        return stop, task

    async def stop_all(self) -> None:
        for stop, _ in self.running:
            stop.set()
        tasks = [t for _, t in self.running]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        if pending:
            stacks = io.StringIO()
            for task in pending:
                task.print_stack(file=stacks)
                task.cancel()
            await asyncio.wait(pending, timeout=2)
            raise AssertionError(
                f"{len(pending)} replica(s) still running {STOP_GRACE_S:.0f} s after stop:\n"
                + stacks.getvalue()
            )
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise AssertionError(f"{task.get_name()} failed") from task.exception()
