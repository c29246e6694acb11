"""Helpers shared by the benchmarks: free ports, child processes, a WeCom test app."""

from __future__ import annotations

import contextlib
import os
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wecom_env(api_base: str = "http://127.0.0.1:9/unused") -> dict[str, str]:
    key = (string.ascii_letters + string.digits)[:43]
    return {
        "WECOM_CORP_ID": "wwbenchcorp",
        "WECOM_AGENT_ID": "1000002",
        "WECOM_SECRET": "bench-secret-value",
        "WECOM_TOKEN": "benchtoken",
        "WECOM_AES_KEY": key,
        "WECOM_API_BASE": api_base,
    }


def flush_redis() -> None:
    redis.Redis.from_url(REDIS_URL).flushdb()


@contextlib.contextmanager
def child(
    args: list[str],
    env: dict[str, str],
    ready_url: str | None = None,
    *,
    cpus: set[int] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `bot ...` in a child process (pinned to `cpus` if given); wait for `ready_url`
    to answer 200 if given."""
    full_env = {**os.environ, **env}
    log_path = Path(tempfile.gettempdir()) / f"bot-bench-{args[0]}.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", *args],
        env=full_env,
        cwd=ROOT,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        if cpus is not None:
            os.sched_setaffinity(proc.pid, cpus)
        if ready_url:
            _wait_http(ready_url, proc, log_path)
        yield proc
    finally:
        log_file.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_http(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"child exited: {log_path.read_text()[-2000:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=1) as resp,  # noqa: S310 - loopback
        ):
            if resp.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
