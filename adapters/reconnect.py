"""What every long connection (DingTalk Stream, the Feishu long connection) shares: its state
for readiness and metrics, the read loop with its liveness watchdog, and the reconnect loop
with jittered backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp

from adapters import errcodes
from bot.errors import PlatformRejectedError, PlatformUnavailableError

log = logging.getLogger(__name__)

# The SDKs' reconnect schedule: 1 s doubling up to 60 s
# (docs/protocols/dingtalk.md#keepalive-and-reconnect).
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0


# What aiohttp hands a reader when the connection has ended (or broke).
CLOSED_TYPES = frozenset(
    {
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSMsgType.CLOSING,
        aiohttp.WSMsgType.CLOSED,
        aiohttp.WSMsgType.ERROR,
    }
)


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


class LongConnection:
    """One app's long connection, kept up until `run` is cancelled or `stop()` is called.

    Shared by DingTalk Stream and the Feishu long connection: the state, `stop`, the reconnect
    loop with jittered backoff and the read loop with its liveness watchdog. A platform's
    client opens one connection in `_connect_once` and hands it to `_serve`, which passes
    each frame to `_frame` and anything else the socket reads to `_control`.
    """

    name: ClassVar[str]  # the log prefix: "dingtalk stream", "feishu ws"
    # The WebSocket message types that carry the platform's frames.
    frame_types: ClassVar[frozenset[aiohttp.WSMsgType]]
    # After a connection that carried frames: reconnect at once (False) or after the first
    # backoff step (True).
    pause_after_frames: ClassVar[bool]

    def __init__(
        self,
        http: aiohttp.ClientSession,
        api_base: str,
        app: str,
        on_state: Callable[[StreamState], None] | None,
        rng: random.Random | None,
        backoff_base_s: float,
        backoff_cap_s: float,
    ) -> None:
        self._http = http
        self._api_base = api_base
        self.app = app
        self._on_state = on_state
        self._rng = rng or random.Random()  # noqa: S311  # jitter, not a secret
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self.state = StreamState()
        self._stopping = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    @property
    def liveness_s(self) -> float:
        """Nothing received for this long: the connection is dead, reconnect."""
        raise NotImplementedError

    def stop(self) -> None:
        """Close the connection and end `run` (from the loop that runs it)."""
        self._stopping.set()
        if self._ws is not None and not self._ws.closed:
            asyncio.get_running_loop().create_task(self._ws.close())

    def _publish(self) -> None:
        if self._on_state is not None:
            self._on_state(self.state)

    def _set_connected(self, connected: bool) -> None:
        self.state.connected = connected
        self._publish()

    async def _connect_once(self) -> bool:
        """One connection's life; True when it delivered at least one frame."""
        raise NotImplementedError

    async def _frame(self, ws: aiohttp.ClientWebSocketResponse, data: Any) -> bool:
        """Answer one frame; False when the server asked us to reconnect."""
        raise NotImplementedError

    async def _control(self, ws: aiohttp.ClientWebSocketResponse, msg: aiohttp.WSMessage) -> bool:
        """Anything but a frame (ping, pong, close); False when the connection has ended."""
        raise NotImplementedError

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Read `ws` until it ends, goes quiet or we stop; True when it carried frames."""
        self._ws = ws
        self.state.connects += 1
        self._set_connected(True)
        got_frames = False
        try:
            while not self._stopping.is_set():
                try:
                    msg = await ws.receive(timeout=self.liveness_s)
                except TimeoutError:
                    log.warning(
                        "%s %s: nothing received for %.1f s, reconnecting",
                        self.name,
                        self.app,
                        self.liveness_s,
                    )
                    return got_frames
                if msg.type in self.frame_types:
                    # Any frame shows a working connection: a later drop starts the backoff
                    # schedule over.
                    got_frames = True
                    self.state.last_frame_at = time.time()
                    self.state.frames += 1
                    self._publish()
                    if not await self._frame(ws, msg.data):
                        return got_frames
                elif not await self._control(ws, msg):
                    return got_frames
            return got_frames
        finally:
            self._ws = None

    async def run(self) -> None:
        """Connect, serve, and reconnect with jittered backoff until stopped.

        A connection that carried frames was healthy, so the schedule starts over: the next
        try is at once, or after the first step's delay with `pause_after_frames`.
        """
        name = f"{self.name} {self.app}"
        attempt = 0
        try:
            while not self._stopping.is_set():
                got_frames = False
                try:
                    got_frames = await self._connect_once()
                except PlatformRejectedError as exc:
                    known = errcodes.explain(exc.platform, exc.errcode)
                    log.error("%s: refused (%s)%s", name, exc, f"; {known.line()}" if known else "")
                except (PlatformUnavailableError, aiohttp.ClientError, TimeoutError) as exc:
                    log.warning("%s: connection failed (%s)", name, exc)
                finally:
                    self._set_connected(False)
                if self._stopping.is_set():
                    return
                attempt = 0 if got_frames else attempt + 1
                self.state.failures += 0 if got_frames else 1
                if got_frames and not self.pause_after_frames:
                    continue
                delay = backoff_delay(
                    max(0, attempt - 1),
                    rand=self._rng.random(),
                    base_s=self._backoff_base_s,
                    cap_s=self._backoff_cap_s,
                )
                if delay:
                    log.info("%s: reconnecting in %.1f s", name, delay)
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._stopping.wait()
        finally:
            self._set_connected(False)
