"""The `bot` command: up, serve, worker, chat, simulate, stream, doctor, kb, orders, users."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bot import heap
from bot.cli import doctor as doctor_cli
from bot.cli import health as health_cli
from bot.cli import kb as kb_cli
from bot.cli import orders as orders_cli
from bot.cli import stream as stream_cli
from bot.cli import user_errors
from bot.cli import users as users_cli
from bot.errors import ConfigError
from bot.logs import setup_logging
from bot.settings import Settings

log = logging.getLogger("bot.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bot", description="Customer-service bot platform")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="web + worker (+ embedded Redis), sample knowledge, sandbox WeCom")
    serve = sub.add_parser("serve", help="the web process (webhooks, web chat, admin, metrics)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="web processes sharing the port (SO_REUSEPORT; default 1, e.g. one per core)",
    )
    worker = sub.add_parser("worker", help="a Celery worker process (thread pool)")
    worker.add_argument("--concurrency", type=int, default=None)
    chat = sub.add_parser("chat", help="talk to the running bot in the terminal")
    chat.add_argument("--url", default=None, help="server base URL (default from BOT_PORT)")
    chat.add_argument("--user", default=None)
    simulate = sub.add_parser("simulate", help="send a platform webhook to a running server")
    simulate.add_argument(
        "platform",
        choices=["wecom", "wecom_kf", "wecom_aibot", "dingtalk", "feishu", "wechat_mp", "web"],
    )
    simulate.add_argument("text", nargs="?", default="")
    simulate.add_argument(
        "--image",
        type=Path,
        default=None,
        metavar="FILE",
        help="wecom, wechat_mp; wecom_kf, feishu, dingtalk, wecom_aibot in trial mode: "
        "send this picture instead of text",
    )
    simulate.add_argument(
        "--voice",
        type=Path,
        default=None,
        metavar="FILE",
        help="wecom, wechat_mp; wecom_kf, feishu, dingtalk in trial mode: "
        "send this recording as voice; wecom_aibot: a voice message whose transcript is TEXT "
        "(WeCom gives that bot words, never the recording)",
    )
    simulate.add_argument(
        "--app", default="default", help="which app of bot.toml (/webhooks/PLATFORM/APP)"
    )
    simulate.add_argument("--url", default=None, help="server base URL (default from BOT_PORT)")
    simulate.add_argument("--user", default="zhangsan", help="the sender's user id")
    simulate.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the reply")
    simulate.add_argument(
        "--group",
        action="store_true",
        help="a group message (dingtalk, wecom_aibot: @-mentions the robot; feishu: see --mention)",
    )
    simulate.add_argument(
        "--mention", action="store_true", help="feishu: the group message @-mentions the bot"
    )
    simulate.add_argument(
        "--stream",
        action="store_true",
        help="wecom_aibot, feishu, dingtalk (sandbox): each update as it arrives, with its time",
    )
    stream_cli.add_parser(sub)
    health_cli.add_parser(sub)
    doctor_cli.add_parser(sub)
    kb_cli.add_parser(sub)
    orders_cli.add_parser(sub)
    users_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "up": cmd_up,
        "serve": cmd_serve,
        "worker": cmd_worker,
        "chat": cmd_chat,
        "simulate": cmd_simulate,
        "stream": stream_cli.cmd_stream,
        "health": health_cli.cmd_health,
        "doctor": doctor_cli.cmd_doctor,
        "kb": kb_cli.cmd_kb,
        "orders": orders_cli.cmd_orders,
        "bindings": orders_cli.cmd_bindings,
        "users": users_cli.cmd_users,
    }
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # What the user can fix is one line and exit status 2; a bug keeps its traceback.
        line = user_errors.explain(exc)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return user_errors.USAGE


def _base_url(settings: Settings, url: str | None) -> str:
    return (url or f"http://127.0.0.1:{settings.core.port}").rstrip("/")


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from bot.web.app import create_app

    settings = Settings.load()
    setup_logging(settings.core.log_level)
    if not settings.core.redis_url:
        raise ConfigError("REDIS_URL is not set (run `bot up` for an embedded Redis)")
    host = args.host or settings.core.host
    port = args.port or settings.core.port
    if args.workers < 1:
        raise ConfigError("--workers must be 1 or more")
    if args.workers == 1:
        web.run_app(
            create_app(settings, freeze_heap=True),
            host=host,
            port=port,
            access_log=None,
            print=lambda _msg: None,
        )
        return 0
    from bot.web.processes import serve_processes

    return serve_processes(args.workers, host, port)


def cmd_worker(args: argparse.Namespace) -> int:
    from celery.utils.nodenames import host_format

    from bot.broker import QUEUE
    from bot.db import engine
    from workers.celery_app import app, configure
    from workers.pool import AsyncPool

    settings = Settings.load()
    setup_logging(settings.core.log_level)
    configure(settings)
    engine.check_before_use(False)  # a turn meeting an ended connection is tried again
    worker = app.Worker(
        pool_cls=AsyncPool,
        concurrency=args.concurrency or settings.core.worker_concurrency,
        queues=[QUEUE],
        loglevel=settings.core.log_level,
        without_gossip=True,
        without_mingle=True,
        hostname=host_format(f"bot-worker-{os.getpid()}@%h"),
    )
    # Hours of turns in one process: the start-up heap out of the collector's walks, and
    # young collections less often (the collector took 12 % of the CPU at 1,000 turns).
    heap.settle(young_threshold=heap.YOUNG_THRESHOLD)
    worker.start()
    return int(worker.exitcode or 0)


def cmd_up(_args: argparse.Namespace) -> int:
    from bot.cli import embedded, local
    from bot.settings import apps as appconfig

    settings = Settings.load()
    setup_logging(settings.core.log_level)
    port = settings.core.port
    if embedded.port_open("127.0.0.1", port):
        raise user_errors.UserError(
            f"port {port} is in use (another `bot up`?): stop that, or set BOT_PORT"
        )
    # SIGTERM (docker stop, kill) and SIGHUP (the terminal closed) unwind like Ctrl-C, so
    # the children are stopped too: the embedded Redis ignores SIGHUP and would stay behind.
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, lambda *_: sys.exit(0))
    env = dict(os.environ)
    children: list[subprocess.Popen[bytes]] = []
    data_dir = settings.core.data_dir
    try:
        if not settings.core.redis_url:
            # Its own Redis, never whatever answers on 6379 (someone's DB 0).
            proc, url = embedded.start_redis(data_dir)
            children.append(proc)
            env["REDIS_URL"] = url
            print(f"Redis: started an embedded server at {url} (REDIS_URL unset)")
        # `bot simulate` and `bot chat` in another terminal find this run through data/up.env.
        local.write_run_env(data_dir, {"REDIS_URL": env["REDIS_URL"], "BOT_PORT": str(port)})
        summary = kb_cli.load_sample_if_empty(settings)
        if summary:
            print(summary)
        orders_summary = _load_sample_orders(settings)
        if orders_summary:
            print(orders_summary)
        sandbox = not settings.wecom.enabled
        if sandbox:
            env.update(
                embedded.sandbox_env(data_dir, settings.core.port, kf=not settings.wecom_kf.enabled)
            )
        children.append(_child([sys.executable, "-m", "bot.cli", "worker"], env))
        # DingTalk Stream mode / the Feishu long connection, instead of a webhook URL: one
        # process per app that asks for it (DINGTALK_STREAM, FEISHU_STREAM, `stream = true`).
        for platform, app in appconfig.stream_apps(settings):
            # App names are checked against [a-z0-9_-]{1,32} when bot.toml is read.
            command = [sys.executable, "-m", "bot.cli", "stream", platform, "--app", app]
            children.append(_child(command, env))
        web_proc = _child([sys.executable, "-m", "bot.cli", "serve"], env)
        children.append(web_proc)
        _wait_ready(f"http://127.0.0.1:{settings.core.port}", web_proc)
        _print_welcome(settings, sandbox, env["REDIS_URL"])
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        print("a process stopped; shutting down", file=sys.stderr)
        return 1
    finally:
        local.clear_run_env(data_dir)
        # One at a time, last started first: the web stops taking messages, the worker
        # finishes the turns it holds while Redis is still there, then Redis.
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=15)
            if child.poll() is None:
                child.kill()
                child.wait()


def _child(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A process of `bot up`, in a process group of its own: the terminal's Ctrl-C and
    hangup reach `bot up` alone, which stops its children in order (Celery would restart
    on a hangup when its output is not a terminal)."""
    return subprocess.Popen(command, env=env, process_group=0)  # noqa: S603 - our own argv


def _load_sample_orders(settings: Settings) -> str | None:
    """The demo orders, on first run with the SQL order backend (ORDERS_SAMPLE_FILE)."""
    if settings.orders.backend != "sql":
        return None
    from bot.db.engine import get_engine
    from bot.orders.sql import load_sample_if_empty

    engine = get_engine(settings.core.effective_database_url())
    return load_sample_if_empty(engine, settings.orders.sample_file)


def _wait_ready(base: str, web_proc: subprocess.Popen[bytes]) -> None:
    async def poll() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and web_proc.poll() is None:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(base + "/readyz") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.3)
        raise user_errors.UserError(
            "the web process did not become ready (its error is above); nothing was left running"
        )

    asyncio.run(poll())


def _print_welcome(settings: Settings, sandbox: bool, redis_url: str) -> None:
    from bot.cli.local import bot_command

    bot = bot_command()  # `.venv/bin/bot` when the shell finds no `bot`
    base = f"http://127.0.0.1:{settings.core.port}"
    llm = "vLLM" if settings.vllm.enabled else ""
    if settings.dashscope.enabled:
        llm = f"{llm} + DashScope fallback" if llm else "DashScope"
    print()
    print(f"  Chat in your browser:  {base}/")
    print(f"  Chat in the terminal:  {bot} chat")
    print(f"  Model:                 {llm or 'none configured: answers from the knowledge base'}")
    # Which Redis holds this run's queue and state (its password not shown).
    where = "REDIS_URL" if settings.core.redis_url else "embedded, REDIS_URL unset"
    print(f"  Redis:                 {re.sub(r'//[^@/]*@', '//***@', redis_url)} ({where})")
    print("  Webhook URLs to register on each platform (replace the host with your public one):")
    for platform, app in _webhook_apps(settings):
        path = platform if app == "default" else f"{platform}/{app}"
        print(f"    {path:20s} {base}/webhooks/{path}")
    if sandbox:
        print("  WeCom is not configured: a sandbox WeCom app is running. Try:")
        print(f'    {bot} simulate wecom "怎么退货"')
        print(f'    {bot} simulate web "发票怎么开"')
    print(f"  Operator console:      {base}/console/")
    print(f"    first admin:  {bot} users add NAME --role admin   (asks for the password)")
    print(f"  Health: {base}/healthz  Readiness: {base}/readyz  Metrics: {base}/metrics")
    print("  Press Ctrl-C to stop.")
    print()


def _webhook_apps(settings: Settings) -> list[tuple[str, str]]:
    """Every app whose webhook URL to show: each configured one, and the unconfigured defaults."""
    from bot.settings import apps as appconfig

    found = []
    for platform in appconfig.SECTIONS:
        found += [(platform, app) for app in appconfig.app_names(settings, platform) or ["default"]]
    return found


def cmd_chat(args: argparse.Namespace) -> int:
    from bot.cli.local import client_settings

    settings = client_settings()
    base = _base_url(settings, args.url)
    # Web chat ids are signed by the server (bot/web/identity.py): a chosen --user is signed
    # here with the server's key; otherwise the first answer issues one and we keep it.
    from bot.cli.simulate.common import plain_reply
    from bot.web import identity as web_identity

    who: dict[str, str] = {}
    if args.user:
        who = {"user": args.user, "sig": asyncio.run(web_identity.sign_for(settings, args.user))}
    print(f"Chatting with {base} as {who.get('user', 'a new web user')}.")
    print("Empty line or Ctrl-D to quit.")

    async def turn(http: aiohttp.ClientSession, text: str) -> str:
        payload = {**who, "text": text}
        async with http.post(base + "/api/chat", json=payload) as resp:
            data: dict[str, Any] = await resp.json()
            if resp.status != 200:
                return f"[{resp.status}] {data.get('error', data)}"
            who.update(user=str(data["user"]), sig=str(data["sig"]))
            return plain_reply(data)

    async def loop() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            while True:
                try:
                    text = await asyncio.to_thread(input, "你> ")
                except EOFError:
                    return
                if not text.strip():
                    return
                try:
                    print("客服>", await turn(http, text))
                except aiohttp.ClientConnectorError:
                    raise  # no server there: one line saying what to do, exit 2
                except (aiohttp.ClientError, TimeoutError) as exc:
                    print(f"cannot reach {base}: {exc}", file=sys.stderr)

    asyncio.run(loop())
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from bot.cli import simulate
    from bot.cli.local import client_settings

    media = {
        "--image": ("wecom", "wecom_kf", "wechat_mp", "feishu", "dingtalk", "wecom_aibot"),
        "--voice": ("wecom", "wecom_kf", "wechat_mp", "feishu", "dingtalk", "wecom_aibot"),
    }
    for flag, given in (("--image", args.image), ("--voice", args.voice)):
        if given is not None and args.platform not in media[flag]:
            print(f"{flag} works with `bot simulate` {', '.join(media[flag])}", file=sys.stderr)
            return 2
    if args.image is not None and args.voice is not None:
        print("send one of --image FILE or --voice FILE", file=sys.stderr)
        return 2
    if args.stream and args.platform not in ("wecom_aibot", "feishu", "dingtalk"):
        print("--stream works with wecom_aibot, feishu and dingtalk", file=sys.stderr)
        return 2
    if not args.text and args.image is None and args.voice is None:
        print("say what to send: a text, --image FILE or --voice FILE", file=sys.stderr)
        return 2
    settings = client_settings()
    base = _base_url(settings, args.url)
    if args.platform == "web":
        return asyncio.run(simulate.web(base, args.user, args.text, args.wait, settings=settings))
    if args.platform == "dingtalk":
        return asyncio.run(
            simulate.dingtalk(
                base,
                settings,
                args.text,
                args.group,
                args.user,
                args.wait,
                args.app,
                args.stream,
                args.image,
                args.voice,
            )
        )
    if args.platform == "feishu":
        return asyncio.run(
            simulate.feishu(
                base,
                settings,
                args.text,
                args.group,
                args.mention,
                args.user,
                args.wait,
                args.app,
                args.stream,
                args.image,
                args.voice,
            )
        )
    if args.platform == "wechat_mp":
        return asyncio.run(
            simulate.wechat_mp(
                base, settings, args.user, args.text, args.wait, args.app, args.image, args.voice
            )
        )
    if args.platform == "wecom_kf":
        return asyncio.run(
            simulate.wecom_kf(
                base, settings, args.user, args.text, args.wait, args.app, args.image, args.voice
            )
        )
    if args.platform == "wecom_aibot":
        return asyncio.run(
            simulate.wecom_aibot(
                base,
                settings,
                args.user,
                args.text,
                args.wait,
                args.app,
                args.group,
                args.stream,
                args.image,
                args.voice,
            )
        )
    return asyncio.run(
        simulate.wecom(
            base, settings, args.user, args.text, args.wait, args.app, args.image, args.voice
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
