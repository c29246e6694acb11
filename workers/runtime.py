"""The worker process's `bot.runtime.Runtime`, opened on the pool's loop by the first task."""

from __future__ import annotations

import asyncio

from bot.runtime import Runtime
from workers.celery_app import current_settings

_runtime: Runtime | None = None
_opening: asyncio.Lock | None = None


async def get() -> Runtime:
    """The process's runtime, opened once (on the loop every task runs on)."""
    global _runtime, _opening
    if _runtime is not None:
        return _runtime
    if _opening is None:
        _opening = asyncio.Lock()
    async with _opening:
        if _runtime is None:
            _runtime = await Runtime.open(current_settings())
    return _runtime


async def close() -> None:
    """Close the runtime (at worker shutdown); the next task opens a new one."""
    global _runtime, _opening
    found, _runtime, _opening = _runtime, None, None
    if found is not None:
        await found.close()
