"""What `bot up` leaves for the other commands typed beside it, and how to type them.

`bot up` chooses settings the shell it runs in never sees: the embedded Redis's URL on a
free port, and the sandbox WeCom and 微信客服 apps (data/sandbox.env, kept across runs). It
writes this run's Redis URL and port to data/up.env (removed when it stops), so `bot
simulate` and `bot chat` in another terminal read the same settings as `bot up` without
exporting anything. What the environment or .env sets always wins; a data/up.env left by a
`bot up` that no longer answers (killed, or before a reboot) is ignored.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from bot.cli import embedded
from bot.settings import Settings

RUN_FILE = "up.env"


def write_run_env(data_dir: Path, values: Mapping[str, str]) -> Path:
    """data/up.env: the running `bot up`'s REDIS_URL and BOT_PORT (the URL may hold a password)."""
    path = data_dir / RUN_FILE
    embedded.write_env_file(
        path,
        "Written by `bot up` for `bot simulate` and `bot chat`; removed when it stops.",
        values,
    )
    return path


def clear_run_env(data_dir: Path) -> None:
    (data_dir / RUN_FILE).unlink(missing_ok=True)


def client_settings() -> Settings:
    """The settings `bot up` runs with, for the commands that talk to it.

    The environment and .env first; then, for what they leave unset, the running `bot
    up`'s Redis and port, and the sandbox apps when WeCom is not configured (as `bot up`
    decides).
    """
    settings = Settings.load()
    data_dir = settings.core.data_dir
    found = embedded.read_env_file(data_dir / RUN_FILE)
    if found and not _answers(found):
        # Left by a `bot up` that was killed or a machine that rebooted: its Redis is gone,
        # and "cannot reach Redis, fix REDIS_URL" would send the user the wrong way.
        found = {}
    if not settings.wecom.enabled:
        sandbox = embedded.load_sandbox_env(data_dir)
        if settings.wecom_kf.enabled:  # the operator's own 微信客服 app stays theirs
            sandbox = {k: v for k, v in sandbox.items() if not k.startswith("WECOM_KF_")}
        found = {**sandbox, **found}
    missing = {k: v for k, v in found.items() if k not in os.environ}
    if not missing:
        return settings
    os.environ.update(missing)
    return Settings.load()


def _answers(run: Mapping[str, str]) -> bool:
    """Whether the `bot up` that wrote data/up.env still runs: its port or its Redis answers."""
    port = run.get("BOT_PORT", "")
    if port.isdigit() and embedded.port_open("127.0.0.1", int(port)):
        return True
    try:
        url = urlsplit(run.get("REDIS_URL", ""))
        host, redis_port = url.hostname, url.port or 6379
    except ValueError:
        return False
    return host is not None and embedded.port_open(host, redis_port)


def bot_command() -> str:
    """`bot` as it can be typed here: `bot` when the shell finds this one, else its path."""
    script = Path(sys.executable).parent / "bot"
    if not script.is_file():
        return f"{sys.executable} -m bot.cli"
    found = shutil.which("bot")
    if found is not None and Path(found).resolve() == script.resolve():
        return "bot"
    try:
        return str(script.absolute().relative_to(Path.cwd()))  # `.venv/bin/bot`
    except ValueError:
        return str(script.absolute())
