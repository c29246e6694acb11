"""The CLI against running servers: `bot up` on embedded defaults, `bot simulate`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psutil
import pytest
import redis

from bot.cli import embedded
from tests.integration.conftest import REPO, SAMPLE_KB, faq_answer

DEMO_ORDERS = REPO / "examples" / "orders.csv"


def _data_rows(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").strip().splitlines()) - 1


def _env(**extra: str) -> dict[str, str]:
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WECOM_", "VLLM_", "DASHSCOPE_", "BOT_", "REDIS_", "DATABASE_"))
    }
    return {**keep, "PYTHONPATH": str(REPO), **extra}


async def _run_cli(
    env: dict[str, str],
    *args: str,
    stdin: bytes = b"",
    timeout_s: float = 60,
    cwd: Path | None = None,
) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(stdin), timeout_s)
    return proc.returncode or 0, out.decode()


async def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "bot up exited early"
            try:
                async with http.get(base + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.3)
    raise AssertionError("bot up did not become ready")


@pytest.mark.timeout(150)
async def test_bot_up_answers_from_the_sample_knowledge_base(private_redis, tmp_path) -> None:
    # A Redis of its own, named by REDIS_URL: on the shared one a Celery worker of another
    # test run on the same database took its messages (and answered with a fake model).
    redis_url = private_redis.url
    port = embedded.free_port()
    base = f"http://127.0.0.1:{port}"
    # ./data of its working directory, as in a checkout.
    env = _env(
        REDIS_URL=redis_url,
        BOT_PORT=str(port),
        BOT_HOST="127.0.0.1",
        BOT_KNOWLEDGE_DIR=str(SAMPLE_KB),
        ORDERS_SAMPLE_FILE=str(DEMO_ORDERS),
    )
    # Another terminal in the same folder: neither REDIS_URL nor BOT_PORT is exported there;
    # the commands find the running `bot up` (data/up.env) and its sandbox apps.
    shell = _env()
    up = subprocess.Popen(  # noqa: ASYNC220 - started once; the test polls it without blocking
        [sys.executable, "-m", "bot.cli", "up"],
        env=env,
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        await _wait_ready(base, up)
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/api/chat", json={"text": "我想退货怎么办"}) as resp:
                assert resp.status == 200
                data = await resp.json()
            # The server issued a signed web identity; an unsigned claim to it is refused.
            claim = {"user": data["user"], "text": "查一下我的订单"}
            async with http.post(base + "/api/chat", json=claim) as refused:
                assert refused.status == 401
        assert data["reply"] == faq_answer("怎么退货")

        here = tmp_path
        code, out = await _run_cli(
            shell, "simulate", "wecom", "发票怎么开", "--user", "lisi", cwd=here
        )
        assert code == 0, out
        assert "POST /webhooks/wecom -> 200" in out
        assert f"message/send to lisi: {faq_answer('如何开发票')}" in out

        code, out = await _run_cli(shell, "simulate", "wecom_kf", "多久发货", cwd=here)
        assert code == 0, out
        assert f"kf/send_msg to wmzhangsan: {faq_answer('多久发货')}" in out

        # Signed as zhangsan with the key the server keeps in its Redis.
        code, out = await _run_cli(shell, "simulate", "web", "多久发货", cwd=here)
        assert code == 0, out
        assert out.strip() == faq_answer("多久发货")

        code, out = await _run_cli(shell, "chat", stdin="运费怎么算\n\n".encode(), cwd=here)
        assert code == 0, out
        assert f"客服> {faq_answer('运费怎么算')}" in out
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            raise
    assert not (tmp_path / "data" / "up.env").exists()  # nothing left pointing at it
    assert up.stdout is not None
    with up.stdout:
        banner = up.stdout.read().decode()
    # The commands it suggests can be typed as printed, here: `bot` on PATH or its path.
    suggested = re.search(r"Chat in the terminal: +(\S+) chat$", banner, re.MULTILINE)
    assert suggested is not None, banner
    typed = suggested[1]
    assert shutil.which(typed, path=env["PATH"]) or (tmp_path / typed).is_file(), typed
    assert f"{base}/webhooks/wecom" in banner
    assert re.search(rf"Redis: +{re.escape(redis_url)} \(REDIS_URL\)", banner), banner
    assert "Knowledge: loaded 3 documents" in banner  # first run: the sample, into the database
    orders, events = (_data_rows(DEMO_ORDERS), _data_rows(DEMO_ORDERS.with_name("shipments.csv")))
    assert f"Orders: loaded {orders} demo orders and {events} logistics events" in banner
    assert f"{base}/" in banner


async def test_simulate_without_any_wecom_app_says_what_to_do(tmp_path) -> None:
    env = _env(BOT_DATA_DIR=str(tmp_path / "nothing"))
    code, out = await _run_cli(env, "simulate", "wecom", "hi", "--url", "http://127.0.0.1:9")
    assert code == 2
    assert "run `bot up` first" in out


def test_embedded_redis_starts_and_stops(tmp_path) -> None:
    proc, url = embedded.start_redis(tmp_path)
    try:
        client = redis.Redis.from_url(url)
        assert client.ping()
        client.set("k", "v")
        assert client.get("k") == b"v"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.timeout(150)
async def test_closing_the_terminal_stops_everything_bot_up_started(tmp_path) -> None:
    """SIGHUP to the terminal's process group, as closing its window sends: the embedded
    Redis ignores it and the Celery worker (output not a tty) restarts on it, so `bot up`
    must stop them itself."""
    port = embedded.free_port()
    up = subprocess.Popen(  # noqa: ASYNC220 - started once; the test polls it without blocking
        [sys.executable, "-m", "bot.cli", "up"],
        env=_env(BOT_PORT=str(port), BOT_KNOWLEDGE_DIR=str(SAMPLE_KB)),
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tree: list[psutil.Process] = []
    try:
        await _wait_ready(f"http://127.0.0.1:{port}", up)
        tree += [psutil.Process(up.pid), *psutil.Process(up.pid).children(recursive=True)]
        assert len(tree) >= 4  # bot up, Redis, worker, web
        os.killpg(up.pid, signal.SIGHUP)
        up.wait(timeout=60)
        _gone, alive = psutil.wait_procs(tree, timeout=10)
        assert alive == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(up.pid, signal.SIGKILL)
        for proc in tree:  # its children are in process groups of their own
            with contextlib.suppress(psutil.Error):
                proc.kill()
    assert not (tmp_path / "data" / "up.env").exists()
