"""What the fault tests share: a redis-server of their own to freeze, kill and restart, and a
stand-in platform that sends a message again until it is acknowledged."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.private_redis import PrivateRedis
from tests.integration.worker_process import start_worker, worker_env

PLATFORM_TIMEOUT_S = 5.0  # WeCom gives a callback 5 s


async def stack_on(
    private_redis: PrivateRedis,
    make_settings: Any,
    make_client: Any,
    fakes: Any,
    wecom_app: Any,
    tmp_path: Path,
    **worker_extra: str,
) -> tuple[Any, subprocess.Popen[bytes], Path]:
    """A web process and a `bot worker` process (16 turns at once, its output in the returned
    log) on the test's own Redis, no burst window, redelivery after 20 s; `worker_extra`:
    more of the worker's environment (DATABASE_URL …)."""
    settings = make_settings(core={"redis_url": private_redis.url}, **fakes.sections(wecom_app))
    client = await make_client(settings)
    env = worker_env(
        settings,
        fakes,
        wecom_app,
        private_redis.url,
        BOT_BURST_WINDOW_S="0",
        BOT_BROKER_VISIBILITY_TIMEOUT_S="20",
        **worker_extra,
    )
    log = tmp_path / "worker.log"
    return client, start_worker(env, tmp_path, concurrency=16, log=log), log


@dataclass
class PlatformCounts:
    """What the stand-in platform saw: acknowledgements, 503s, timeouts, other statuses."""

    delivered: int = 0
    unavailable: int = 0  # 503s
    timeouts: int = 0
    errors: Counter[int] = field(default_factory=Counter)


async def all_answered(
    fakes: Any, expected: int, worker: subprocess.Popen[bytes], log: Path, timeout_s: float
) -> None:
    """Wait until WeCom was sent `expected` replies; when it was not, say where the worker
    stood (alive or not, the end of its log), so a failure names its cause."""
    from tests.integration.conftest import wait_for

    try:
        await wait_for(lambda: len(fakes.wecom.sent) >= expected, timeout_s)
    except AssertionError as exc:
        tail = (await asyncio.to_thread(log.read_text, errors="replace"))[-6000:]
        raise AssertionError(
            f"{exc}; {len(fakes.wecom.sent)} of {expected} sent, worker alive: "
            f"{worker.poll() is None}; the worker's log ends:\n{tail}"
        ) from None


async def deliver(client: Any, wecom_app: Any, user: str, counts: PlatformCounts) -> None:
    """One WeCom message as the platform sends it: again until a 200 comes back in time."""
    msg_id = f"9{abs(hash(user)) % 10**15:015d}"
    while True:
        query, body = wecom_app.callback(f"问题 {user}", user=user, msg_id=msg_id)
        try:
            async with asyncio.timeout(PLATFORM_TIMEOUT_S):
                resp = await client.post("/webhooks/wecom", params=query, data=body)
                status = resp.status
        except TimeoutError:
            counts.timeouts += 1
        else:
            if status == 200:
                counts.delivered += 1
                return
            if status == 503:
                counts.unavailable += 1
            else:
                counts.errors[status] += 1
        await asyncio.sleep(1.0)
