"""User errors of the `bot` command, typed as a user types them: one line on stderr saying
what to do, exit status 2, never a traceback."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import embedded
from tests.integration.conftest import REPO

BOT = Path(sys.executable).parent / "bot"


def _typed(*args: str) -> list[str]:
    """The command line as typed: the installed `bot` script (`python -m bot.cli` without one)."""
    return [str(BOT), *args] if BOT.is_file() else [sys.executable, "-m", "bot.cli", *args]


def _shell(**extra: str) -> dict[str, str]:
    """A user's shell: none of the bot's settings exported."""
    prefixes = ("WECOM_", "DINGTALK_", "FEISHU_", "WECHAT_", "VLLM_", "DASHSCOPE_", "EMBEDDING_")
    prefixes += ("BOT_", "REDIS_", "DATABASE_", "TEST_")
    keep = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return {**keep, "PYTHONPATH": str(REPO), **extra}


def _run(cwd: Path, *args: str, stdin: str = "", **env: str) -> tuple[int, str, str]:
    result = subprocess.run(
        _typed(*args),
        cwd=cwd,
        env=_shell(**env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


def _one_line(code: int, stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert code == 2, stderr
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_quick_start_simulate_web_without_a_server_says_to_start_one(tmp_path: Path) -> None:
    port = embedded.free_port()  # nothing there: `bot up` is not running
    code, _, err = _run(tmp_path, "simulate", "web", "发票怎么开", BOT_PORT=str(port))
    line = _one_line(code, err)
    assert f"cannot reach 127.0.0.1:{port} (Connection refused)" in line
    assert "`bot up`" in line
    assert "--url" in line


def test_simulate_wecom_against_a_wrong_port_is_one_line(tmp_path: Path) -> None:
    embedded.sandbox_env(tmp_path / "data", 1)  # as a `bot up` run left it
    url = "http://127.0.0.1:1/somewhere"
    code, _, err = _run(tmp_path, "simulate", "wecom", "发票怎么开", "--url", url)
    assert "cannot reach 127.0.0.1:1 (Connection refused)" in _one_line(code, err)


def test_url_without_a_scheme_says_how_to_write_it(tmp_path: Path) -> None:
    code, _, err = _run(tmp_path, "simulate", "web", "hi", "--url", "localhost:8080")
    assert "write --url as http://HOST:PORT" in _one_line(code, err)


def test_bad_redis_url_names_the_setting(tmp_path: Path) -> None:
    code, _, err = _run(tmp_path, "simulate", "web", "hi", REDIS_URL="localhost:6379")
    line = _one_line(code, err)
    assert "REDIS_URL" in line
    assert "redis://" in line


def test_unreachable_redis_says_what_to_do(tmp_path: Path) -> None:
    code, _, err = _run(tmp_path, "chat", "--user", "lisi", REDIS_URL="redis://127.0.0.1:1/0")
    line = _one_line(code, err)
    assert line.startswith("cannot reach Redis")
    assert "REDIS_URL" in line


def test_unreachable_database_names_the_setting(tmp_path: Path) -> None:
    url = "postgresql+psycopg://bot:secret@127.0.0.1:1/bot"
    code, _, err = _run(tmp_path, "kb", "list", DATABASE_URL=url)
    line = _one_line(code, err)
    assert line.startswith("cannot use the database (DATABASE_URL)")
    assert "secret" not in line


def test_chat_with_no_server_stops_with_one_line(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path, "chat", "--url", "http://127.0.0.1:1", stdin="你好\n")
    assert "cannot reach 127.0.0.1:1" in _one_line(code, err)
    assert "Chatting with http://127.0.0.1:1" in out


def test_stream_with_nothing_to_hold_says_which_settings(tmp_path: Path) -> None:
    code, _, err = _run(tmp_path, "stream")
    assert "DINGTALK_STREAM=true, FEISHU_STREAM=true or WECOM_AIBOT_MODE=longconn" in _one_line(
        code, err
    )


def test_up_on_a_busy_port_says_so_before_starting_anything(tmp_path: Path, busy_port: int) -> None:
    code, _, err = _run(tmp_path, "up", BOT_PORT=str(busy_port))
    assert f"port {busy_port} is in use" in _one_line(code, err)
    assert not (tmp_path / "data" / "redis").exists()  # no Redis was started


def test_serve_on_a_busy_port_says_so(tmp_path: Path, busy_port: int, redis_url: str) -> None:
    args = ("serve", "--host", "127.0.0.1", "--port", str(busy_port))
    code, _, err = _run(tmp_path, *args, REDIS_URL=redis_url)
    assert "Address already in use" in _one_line(code, err)


def test_a_stale_run_file_says_to_start_bot_up_not_to_fix_redis(tmp_path: Path) -> None:
    # A `bot up` killed (or a reboot) left data/up.env pointing at its Redis and port, gone.
    port = embedded.free_port()
    run = {"REDIS_URL": f"redis://127.0.0.1:{embedded.free_port()}/0", "BOT_PORT": str(port)}
    embedded.write_env_file(tmp_path / "data" / "up.env", "left behind", run)
    code, _, err = _run(tmp_path, "simulate", "web", "发票怎么开", BOT_PORT=str(port))
    line = _one_line(code, err)
    assert f"cannot reach 127.0.0.1:{port}" in line
    assert "`bot up`" in line
    assert "REDIS_URL" not in line


def test_up_that_cannot_start_leaves_nothing_running(tmp_path: Path) -> None:
    url = "postgresql+psycopg://bot:secret@127.0.0.1:1/bot"
    code, out, err = _run(tmp_path, "up", BOT_PORT=str(embedded.free_port()), DATABASE_URL=url)
    assert _one_line(code, err).startswith("cannot use the database (DATABASE_URL)")
    started = re.search(r"embedded server at redis://127\.0\.0\.1:(\d+)/", out)
    assert started is not None, out  # it had started its Redis before it found out
    assert not embedded.port_open("127.0.0.1", int(started[1]))  # and stopped it
    assert not (tmp_path / "data" / "up.env").exists()
