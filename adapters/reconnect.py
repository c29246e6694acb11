"""What every long connection (DingTalk Stream, the Feishu long connection) shares: its state
for readiness and metrics, and the reconnect loop with jittered backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bot.errors import PlatformRejectedError, PlatformUnavailableError

log = logging.getLogger(__name__)

# The SDKs' reconnect schedule: 1 s doubling up to 60 s
# (docs/protocols/dingtalk.md#keepalive-and-reconnect).
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0


@dataclass
class StreamState:
    """What readiness and metrics need to know; `last_frame_at` is wall-clock seconds."""

    connected: bool = False
    last_frame_at: float | None = None
    connects: int = 0
    frames: int = 0
    failures: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def backoff_delay(
    attempt: int,
    *,
    rand: float,
    base_s: float = BACKOFF_BASE_S,
    cap_s: float = BACKOFF_CAP_S,
) -> float:
    """Seconds to wait before reconnect `attempt` (0-based): base·2ⁿ capped, jittered.

    `rand` in [0, 1) scales the delay into [½, 1]× so replicas that lost the gateway at the
    same moment do not come back in step.
    """
    ceiling = min(cap_s, base_s * 2 ** min(attempt, 32))
    return ceiling * (0.5 + 0.5 * rand)


async def reconnect_forever(
    connect_once: Callable[[], Awaitable[bool]],
    *,
    name: str,
    state: StreamState,
    stopping: asyncio.Event,
    set_connected: Callable[[bool], None],
    rng: random.Random,
    base_s: float,
    cap_s: float,
    pause_after_frames: bool,
) -> None:
    """Run `connect_once` (one connection's life; True when it carried frames) again and
    again with jittered backoff until `stopping` is set. Shared by the long connections.

    A connection that carried frames was healthy, so the schedule starts over: the next try
    is at once, or after the first step's delay with `pause_after_frames`.
    """
    attempt = 0
    try:
        while not stopping.is_set():
            got_frames = False
            try:
                got_frames = await connect_once()
            except PlatformRejectedError as exc:
                log.error("%s: refused (%s)", name, exc)
            except (PlatformUnavailableError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("%s: connection failed (%s)", name, exc)
            finally:
                set_connected(False)
            if stopping.is_set():
                return
            attempt = 0 if got_frames else attempt + 1
            state.failures += 0 if got_frames else 1
            if got_frames and not pause_after_frames:
                continue
            delay = backoff_delay(
                max(0, attempt - 1), rand=rng.random(), base_s=base_s, cap_s=cap_s
            )
            if delay:
                log.info("%s: reconnecting in %.1f s", name, delay)
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stopping.wait()
    finally:
        set_connected(False)
