"""Synchronous code that waits on coroutines without blocking the event loop it runs on.

Celery calls a task as a plain function. The worker's pool (workers/pool.py) runs that call
inside a greenlet on the process's one event loop; when the task needs an answer from async
code it calls `wait_for(coroutine)`, which switches back to the loop until the coroutine is
done. Waiting costs the task its greenlet and a coroutine, never a thread.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from greenlet import getcurrent, greenlet

T = TypeVar("T")


class _TaskGreenlet(greenlet):  # type: ignore[misc]  # greenlet ships no stubs for subclassing
    """A greenlet that runs one task's synchronous code for `run`."""


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call `fn(*args, **kwargs)` in a greenlet; each `wait_for` inside it is awaited here."""
    child = _TaskGreenlet(fn)
    result: Any = child.switch(*args, **kwargs)
    while not child.dead:
        try:
            value = await result
        except BaseException:
            result = child.throw(*sys.exc_info())
        else:
            result = child.switch(value)
    return result  # type: ignore[no-any-return]


def wait_for(awaitable: Awaitable[T]) -> T:
    """From synchronous code running under `run`: the awaitable's result, awaited on the loop."""
    current = getcurrent()
    if not isinstance(current, _TaskGreenlet):
        raise RuntimeError(
            "wait_for() outside a worker task: start the worker with `bot worker` "
            "(pool workers.pool:AsyncPool)"
        )
    return current.parent.switch(awaitable)  # type: ignore[no-any-return]


def in_task() -> bool:
    """Whether the caller runs under `run` (a worker task), where `wait_for` works."""
    return isinstance(getcurrent(), _TaskGreenlet)
