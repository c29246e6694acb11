"""A base for fake external servers: a small aiohttp app on 127.0.0.1, port 0.

Each fake records the requests it gets and can be told to misbehave for the next N calls,
or for a while (`fail_from_now` … `recover`).
`ThreadedServer` runs one in its own thread and event loop, so sync tests, in-process
Celery workers and worker subprocesses can all reach it while the test does anything.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Failure:
    """How to answer instead of the normal response: an HTTP status, a JSON body, a delay.

    `after`: the call takes effect first (a message is delivered), then this is the answer,
    as when the platform did its work but its answer was lost or came too late. Only the
    fakes that say so honour it (the WeCom API's message/send)."""

    status: int = 500
    body: Any = None
    delay_s: float = 0.0
    after: bool = False


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None


@dataclass
class FakeState:
    """Shared between the fake's handlers (server thread) and the test (any thread)."""

    requests: list[RecordedRequest] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    delay_s: float = 0.0
    failing: Failure | None = None  # fail_from_now: every call, until recover()
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        body: Any = None,
        delay_s: float = 0.0,
        *,
        after: bool = False,
    ) -> None:
        with self.lock:
            self.failures.extend(Failure(status, body, delay_s, after) for _ in range(n))

    def fail_from_now(
        self, status: int = 500, body: Any = None, delay_s: float = 0.0, *, after: bool = False
    ) -> None:
        """Every call fails this way from now on (until the next `fail_from_now` or `recover`),
        as during a platform's outage; `fail_next` failures still come first."""
        with self.lock:
            self.failing = Failure(status, body, delay_s, after)

    def recover(self) -> None:
        """No more injected failures: calls are answered normally again."""
        with self.lock:
            self.failures.clear()
            self.failing = None

    def take_failure(self) -> Failure | None:
        with self.lock:
            return self.failures.pop(0) if self.failures else self.failing

    def record(self, request: RecordedRequest) -> None:
        with self.lock:
            self.requests.append(request)

    def matching(self, path_suffix: str) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.path.endswith(path_suffix)]


async def injected_failure(state: FakeState) -> web.Response | None:
    """The failure to answer this call with, if one is due (`answer_failure`)."""
    return await answer_failure(state, state.take_failure())


async def answer_failure(state: FakeState, failure: Failure | None) -> web.Response | None:
    """`failure` as a response, after its delay; None (after the fake's delay) when none."""
    if failure is None:
        if state.delay_s:
            await asyncio.sleep(state.delay_s)
        return None
    if failure.delay_s:
        await asyncio.sleep(failure.delay_s)
    if failure.body is None:
        return web.Response(status=failure.status, text="injected failure")
    return web.json_response(failure.body, status=failure.status)


async def record(state: FakeState, request: web.Request) -> RecordedRequest:
    body = await request.read()
    parsed: Any = None
    if body:
        try:
            import json

            parsed = json.loads(body)
        except ValueError:
            parsed = None
    rec = RecordedRequest(
        method=request.method,
        path=request.path,
        query=dict(request.query),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        json=parsed,
    )
    state.record(rec)
    return rec


class ThreadedServer:
    """Runs an aiohttp app on 127.0.0.1:0 in a daemon thread; `url` is its base URL."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def start(self) -> str:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.url = fut.result(timeout=10)
        return self.url

    async def _start(self) -> str:
        self._runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._runner is not None:
            fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            fut.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@contextmanager
def serve(app: web.Application) -> Iterator[str]:
    server = ThreadedServer(app)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()
