"""`bot worker` as a separate process, for the tests that kill one (crash and fault tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

from bot.keys import QUEUE
from bot.settings import Settings
from tests.integration.conftest import REPO, SAMPLE_KB, wait_for


def worker_env(
    settings: Settings, fakes: Any, wecom_app: Any, redis_url: str, **extra: str
) -> dict[str, str]:
    """The environment of a worker for this test's fakes, Redis and data folder; `extra`
    (e.g. BOT_BROKER_VISIBILITY_TIMEOUT_S) overrides it."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "VLLM_", "BOT_"))},
        **fakes.env(wecom_app),
        "REDIS_URL": redis_url,
        "BOT_DATA_DIR": str(settings.core.data_dir),
        "BOT_KNOWLEDGE_DIR": str(SAMPLE_KB),
        "BOT_FAQ_DIRECT_SCORE": "1.01",  # questions are FAQs' own: keep the model path
        "PYTHONPATH": str(REPO),
        **extra,
    }


def start_worker(
    env: dict[str, str], cwd: Path, *, concurrency: int, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `bot worker` in its own process group; its output goes to `log` if given."""
    out = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "worker", "--concurrency", str(concurrency)],
            env=env,
            cwd=cwd,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
        )
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]


def stop_worker(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Send `sig` to the worker's process group; SIGKILL it if it has not ended in 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def broker_messages(redis_url: str) -> tuple[int, int]:
    """The task messages the broker holds: queued (at any priority), and taken by a worker but
    not yet acknowledged."""
    client = redis.Redis.from_url(redis_url)
    try:
        queues = [QUEUE, *(f"{QUEUE}\x06\x16{p}" for p in (3, 6, 9))]  # kombu's priority lists
        queued = sum(client.llen(q) for q in queues)
        return queued, max(client.hlen("unacked"), client.zcard("unacked_index"))
    finally:
        client.close()


async def wait_broker_idle(redis_url: str, timeout_s: float = 60) -> None:
    """Wait until the broker holds no task message, twice in a row (a message just popped is
    in neither list for an instant before the worker records it as unacknowledged). Tasks are
    acknowledged when they end (task_acks_late): then no turn is running or will run again,
    so no answer, and no duplicate, can still arrive."""
    held = (0, 0)
    idle_before = False

    def settled() -> bool:
        nonlocal held, idle_before
        held = broker_messages(redis_url)
        twice, idle_before = idle_before and held == (0, 0), held == (0, 0)
        return twice

    try:
        await wait_for(settled, timeout_s)
    except AssertionError:
        raise AssertionError(
            f"the broker still holds {held[0]} queued and {held[1]} unacknowledged messages "
            f"after {timeout_s} s"
        ) from None
