"""`bot stream [dingtalk|feishu|wecom_aibot] [--app NAME]`: hold long connections.

bot/stream/runner.py. Without a platform, every app configured for a long connection
(DINGTALK_STREAM, FEISHU_STREAM, WECOM_AIBOT_MODE=longconn, `stream = true` in bot.toml) in
one process, each behind its own lease: what the compose `stream` service runs. With one,
that app only (what `bot up` starts per app).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from bot.domain import DEFAULT_APP
from bot.errors import ConfigError
from bot.logs import setup_logging
from bot.settings import Settings
from bot.settings import apps as appconfig

NO_STREAM_APPS = (
    "no app receives through a long connection: set DINGTALK_STREAM=true, FEISHU_STREAM=true "
    "or WECOM_AIBOT_MODE=longconn (or `stream = true` for an app of bot.toml), or name one: "
    "bot stream dingtalk|feishu|wecom_aibot"
)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    stream = sub.add_parser(
        "stream", help="hold the platforms' long connections (one replica at a time)"
    )
    stream.add_argument(
        "platform",
        nargs="?",
        choices=["dingtalk", "feishu", "wecom_aibot"],
        help="only this platform's app (default: every app configured for a long connection)",
    )
    stream.add_argument("--app", default=DEFAULT_APP, help="with PLATFORM: which app of bot.toml")
    stream.add_argument(
        "--metrics-port", type=int, default=None, help="serve this process's /metrics here"
    )


def targets(settings: Settings, platform: str | None, app: str) -> list[tuple[str, str]]:
    """The (platform, app) connections to hold; ConfigError when there are none."""
    if platform is not None:
        return [(platform, app)]
    found = appconfig.stream_apps(settings)
    if not found:
        raise ConfigError(NO_STREAM_APPS)
    return found


def cmd_stream(args: argparse.Namespace) -> int:
    settings = Settings.load()
    setup_logging(settings.core.log_level)
    held = targets(settings, args.platform, args.app)
    from bot.stream import runner  # the platforms' clients: only once there is work

    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr=settings.core.host)

    async def hold(platform: str, app: str, stop: asyncio.Event) -> None:
        if platform == "feishu":
            await runner.run_feishu(settings, stop, app=app)
        elif platform == "wecom_aibot":
            await runner.run_wecom_aibot(settings, stop, app=app)
        else:
            await runner.run_dingtalk(settings, stop, app=app)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # SIGTERM/Ctrl-C: close the connections and release the leases so another replica
        # takes over at once instead of after the lease TTL.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await asyncio.gather(*(hold(platform, app, stop) for platform, app in held))

    asyncio.run(run())
    return 0
