"""`bot health worker|stream`: the container health checks of docker-compose.yml.

Exit status 0 when healthy, else 1 with one line saying why (never 2: Docker reserves it).
`worker`: a worker on this host answers a Celery ping through the broker, so the process,
its control loop and its broker connection all work. `stream`: the status every stream
holder writes to Redis (bot/stream/runner.py, what `/readyz` reads) says connected, for every
app configured for a long connection.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys

from bot import keys
from bot.cli import stream as stream_cli
from bot.domain import DEFAULT_APP
from bot.errors import BotError
from bot.settings import Settings

UNHEALTHY = 1


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    health = sub.add_parser("health", help="container health check: worker or stream (exit 0/1)")
    which = health.add_subparsers(dest="health_of", required=True)
    worker = which.add_parser("worker", help="a worker on this host answers a Celery ping")
    worker.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for it")
    stream = which.add_parser("stream", help="the long connections are up (a replica holds each)")
    stream.add_argument("platform", nargs="?", choices=["dingtalk", "feishu"])
    stream.add_argument("--app", default=DEFAULT_APP, help="with PLATFORM: which app")


def cmd_health(args: argparse.Namespace) -> int:
    try:
        settings = Settings.load()
        problem = _worker(settings, args.timeout) if args.health_of == "worker" else None
        if args.health_of == "stream":
            problem = _stream(settings, args.platform, args.app)
    except (BotError, OSError) as exc:
        problem = str(exc)
    except Exception as exc:  # a health check reports, it never crashes
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return UNHEALTHY
    return 0


def _worker(settings: Settings, timeout_s: float) -> str | None:
    from celery import Celery

    from bot.broker import celery_config

    app = Celery("bot-health", set_as_current=False)
    app.conf.update(celery_config(settings))
    host = socket.gethostname()
    try:
        # Workers are named bot-worker-PID@HOST (bot/cli/main.py): ask this host's only, and
        # stop waiting at the first answer.
        replies = app.control.ping(timeout=timeout_s, pattern=f"*@{host}", matcher="glob", limit=1)
    finally:
        app.close()
    if any(name.endswith(f"@{host}") for reply in replies or [] for name in reply):
        return None
    return f"no worker on {host} answered a ping within {timeout_s:g} s"


def _stream(settings: Settings, platform: str | None, app: str) -> str | None:
    import redis

    held = stream_cli.targets(settings, platform, app)
    if not settings.core.redis_url:
        return "REDIS_URL is not set"
    client = redis.Redis.from_url(
        settings.core.redis_url, socket_connect_timeout=2, socket_timeout=3
    )
    try:
        down = []
        for name, app_name in held:
            raw = client.get(keys.stream_status(name, app_name))
            status = json.loads(raw) if raw else None
            if not isinstance(status, dict) or not status.get("connected"):
                down.append(f"{name} {app_name}")
    finally:
        client.close()
    if down:
        return f"long connection down: {', '.join(down)} (no replica holds it connected)"
    return None
