"""The model breakers of every worker, shared through Redis for the dashboard.

Breakers live in each worker process (bot/llm/breaker.py). Each worker writes its state per
backend into the hash `keys.breaker_board(backend)`, one field per worker, as JSON
`{"state", "changed_at", "at"}`: within `CHECK_EVERY_S` of a change and at least every
`keys.BREAKER_PUBLISH_EVERY_S`. The key expires `keys.BREAKER_BOARD_TTL_S` after the last
write, and a field older than that is a worker that stopped; readers ignore it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from bot import keys
from bot.llm import breaker
from bot.llm.breaker import BreakerState

log = logging.getLogger(__name__)

CHECK_EVERY_S = 0.5  # how soon a change is published (an in-memory look, no I/O)
UNKNOWN = "unknown"  # no worker has reported this backend lately
# The state a backend shows when workers disagree: the worst one.
_SEVERITY = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}

Snapshot = dict[str, tuple[BreakerState, float]]


def worker_id() -> str:
    """This process, as the board names it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def snapshot(backends: Sequence[str]) -> Snapshot:
    """The state of each backend's breaker in this process (made on first look)."""
    for name in backends:
        breaker.breaker_for(name)
    found = breaker.statuses()
    return {name: found[name] for name in backends}


async def publish(redis: aioredis.Redis, worker: str, states: Snapshot, *, now: float) -> None:
    """Write this worker's breaker states, refreshing each backend's expiry."""
    async with redis.pipeline(transaction=False) as pipe:
        for backend, (state, changed_at) in states.items():
            key = keys.breaker_board(backend)
            value = {"state": state.value, "changed_at": changed_at, "at": now}
            pipe.hset(key, worker, json.dumps(value))
            pipe.expire(key, keys.BREAKER_BOARD_TTL_S)
        await pipe.execute()


async def run(
    redis: aioredis.Redis,
    backends: Sequence[str],
    *,
    worker: str | None = None,
    wall: Callable[[], float] = time.time,
) -> None:
    """Publish this process's breakers until cancelled: on each change, and periodically."""
    worker = worker or worker_id()
    published: Snapshot | None = None
    published_at = 0.0
    while True:
        states = snapshot(backends)
        now = wall()
        if states != published or now - published_at >= keys.BREAKER_PUBLISH_EVERY_S:
            try:
                await publish(redis, worker, states, now=now)
                published, published_at = states, now
            except (aioredis.RedisError, OSError) as exc:
                # The dashboard is a view: Redis down must not stop the worker. Tried again
                # on the next look.
                if published is not None:
                    log.warning("could not publish the model breakers: %s", exc)
                published = None
        await asyncio.sleep(CHECK_EVERY_S)


@dataclass(frozen=True, slots=True)
class BackendBreaker:
    """One backend's breaker as the dashboard shows it, over every live worker."""

    backend: str
    state: str  # closed, open, half_open, or UNKNOWN
    changed_at: float | None  # when the shown state began (latest among those workers)
    workers: int  # workers that reported lately
    not_closed: int  # of which how many do not let calls through freely


async def read(
    redis: aioredis.Redis, backends: Sequence[str], *, now: float
) -> list[BackendBreaker]:
    """Each backend's breaker over the workers that reported within the TTL."""
    found = []
    for backend in backends:
        entries = await redis.hgetall(keys.breaker_board(backend))
        live: list[tuple[BreakerState, float]] = []
        for raw in entries.values():
            try:
                data = json.loads(raw)
                entry = (BreakerState(data["state"]), float(data["changed_at"]))
                fresh = now - float(data["at"]) <= keys.BREAKER_BOARD_TTL_S
            except (ValueError, KeyError, TypeError):
                continue  # a malformed entry shows as nothing rather than break the page
            if fresh:
                live.append(entry)
        found.append(_summary(backend, live))
    return found


def _summary(backend: str, live: list[tuple[BreakerState, float]]) -> BackendBreaker:
    if not live:
        return BackendBreaker(backend, UNKNOWN, None, 0, 0)
    worst = max((state for state, _ in live), key=_SEVERITY.__getitem__)
    since = max(changed for state, changed in live if state is worst)
    not_closed = sum(1 for state, _ in live if state is not BreakerState.CLOSED)
    return BackendBreaker(backend, worst.value, since, len(live), not_closed)
