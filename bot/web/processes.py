"""`bot serve --workers N`: N web processes on one port, so a host's cores all take requests.

Each process is a whole web process of its own (event loop, Redis pool, adapters) bound
with SO_REUSEPORT, and the kernel spreads new connections across them. The parent only
starts them, passes SIGTERM/SIGINT on, and exits when any of them exits (a supervisor
restarts the lot), so a process that dies is never silently missing.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import signal
import sys
from types import FrameType

from aiohttp import web

from bot.logs import setup_logging
from bot.settings import Settings


def _serve_one(host: str, port: int) -> None:
    from bot.web.app import create_app

    settings = Settings.load()
    setup_logging(settings.core.log_level)
    web.run_app(
        create_app(settings, freeze_heap=True),
        host=host,
        port=port,
        reuse_port=True,
        access_log=None,
        print=lambda _msg: None,
    )


def serve_processes(count: int, host: str, port: int) -> int:
    """Run `count` web processes on host:port until one exits or we are told to stop."""
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter each: no shared loop
    procs = [
        ctx.Process(target=_serve_one, args=(host, port), name=f"web-{n}", daemon=False)
        for n in range(count)
    ]
    for proc in procs:
        proc.start()

    def stop(signum: int, _frame: FrameType | None) -> None:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: aiohttp finishes open requests, then exits
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    multiprocessing.connection.wait([p.sentinel for p in procs])
    exited = next(p for p in procs if not p.is_alive())
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=20)
    return exited.exitcode or 1
