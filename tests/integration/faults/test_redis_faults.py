"""Redis paused and Redis down under load: every message the platform delivers is answered
exactly once.

A private Redis (append-only file, like a production broker) serves the web process and a
worker process. A stand-in platform sends one message per user at about 10 a second and,
like the real ones, tries again when the answer is not a 200 within 5 s. In the middle of
the load Redis is frozen (SIGSTOP) or killed and restarted. Counted at the end: messages
sent, 503s and timeouts seen by the platform, replies per user (must be one each).

The outage lasts FAULT_OUTAGE_S seconds (5 by default, to keep CI short; the issue's
figures are 15 s paused and 20 s down: FAULT_OUTAGE_S=15).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter

import pytest

from tests.integration.faults.load import PlatformCounts, all_answered, deliver, stack_on
from tests.integration.worker_process import stop_worker, wait_broker_idle
from tests.reports import report

OUTAGE_S = float(os.environ.get("FAULT_OUTAGE_S", "5"))
MESSAGES = 60
RATE_PER_S = 10


async def _run_with_fault(
    fault: str, private_redis, make_settings, make_client, fakes, wecom_app, tmp_path
) -> None:
    client, worker, log = await stack_on(
        private_redis, make_settings, make_client, fakes, wecom_app, tmp_path
    )
    counts = PlatformCounts()
    users = [f"fault-{fault}-{n}" for n in range(MESSAGES)]
    try:
        senders = []
        for n, user in enumerate(users):
            senders.append(asyncio.create_task(deliver(client, wecom_app, user, counts)))
            if n == MESSAGES // 3:
                if fault == "paused":
                    private_redis.signal(signal.SIGSTOP)
                    asyncio.get_running_loop().call_later(
                        OUTAGE_S, private_redis.signal, signal.SIGCONT
                    )
                else:
                    private_redis.kill()
                    asyncio.get_running_loop().call_later(OUTAGE_S, private_redis.start)
            await asyncio.sleep(1 / RATE_PER_S)
        await asyncio.wait_for(asyncio.gather(*senders), timeout=OUTAGE_S + 60)
        # A miss was seen once in a full run (not reproduced alone or under load): a failure
        # says where the worker stood.
        await all_answered(fakes, MESSAGES, worker, log, OUTAGE_S + 60)
        # Every turn over, none left to come back: no duplicate can arrive after this.
        await wait_broker_idle(private_redis.url)
    finally:
        stop_worker(worker)
    replies = Counter(m["touser"] for m in fakes.wecom.sent)
    lost = [u for u in users if replies[u] == 0]
    duplicated = [u for u in users if replies[u] > 1]
    report(
        f"redis {fault} {OUTAGE_S:.0f} s under {RATE_PER_S} msg/s: {MESSAGES} messages, "
        f"{counts.unavailable} answered 503, {counts.timeouts} timed out, "
        f"{dict(counts.errors)} other; {len(lost)} lost, {len(duplicated)} answered twice, "
        f"{fakes.wecom.suppressed} duplicate sends dropped by WeCom"
    )
    assert counts.delivered == MESSAGES
    assert not counts.errors
    assert lost == []
    assert duplicated == []


@pytest.mark.timeout(240)
async def test_redis_paused_under_load_loses_nothing(
    private_redis, make_settings, make_client, fakes, wecom_app, tmp_path
) -> None:
    await _run_with_fault(
        "paused", private_redis, make_settings, make_client, fakes, wecom_app, tmp_path
    )


@pytest.mark.timeout(240)
async def test_redis_down_under_load_loses_nothing(
    private_redis, make_settings, make_client, fakes, wecom_app, tmp_path
) -> None:
    await _run_with_fault(
        "down", private_redis, make_settings, make_client, fakes, wecom_app, tmp_path
    )
