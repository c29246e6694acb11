"""PostgreSQL going away under load: every message the platform delivers is answered exactly
once.

A `bot worker` process answers WeCom messages, its rows in a PostgreSQL database of the
test's own. In the middle of the load that database stops taking connections and every
connection to it is ended (what a restart or a failover does to a worker), then takes them
again after OUTAGE_S seconds. A turn that met the outage must be tried again, not failed
for good: Celery acknowledges a failed task, and its message would never be answered.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import psycopg
import pytest

from tests.conftest import PG_ADMIN_URL
from tests.integration.conftest import wait_for
from tests.integration.faults.load import PlatformCounts, all_answered, deliver, stack_on
from tests.integration.worker_process import stop_worker, wait_broker_idle
from tests.reports import report

OUTAGE_S = 3.0
MESSAGES = 40
RATE_PER_S = 10


def _take_connections(name: str, allowed: bool) -> None:
    """Let the database take connections again, or refuse new ones and end those it has."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )


@pytest.mark.timeout(240)
async def test_database_down_under_load_loses_nothing(
    private_redis, make_settings, make_client, fakes, wecom_app, tmp_path, fresh_database
) -> None:
    url = fresh_database()
    if not url.startswith("postgresql"):
        pytest.skip("a PostgreSQL outage (TEST_DATABASE=sqlite runs the embedded default)")
    name = url.rsplit("/", 1)[1]
    client, worker, log = await stack_on(
        private_redis, make_settings, make_client, fakes, wecom_app, tmp_path, DATABASE_URL=url
    )
    counts = PlatformCounts()
    users = [f"db-down-{n}" for n in range(MESSAGES)]
    loop = asyncio.get_running_loop()
    back: list[asyncio.Future[None]] = []
    try:
        senders = []
        for n, user in enumerate(users):
            senders.append(asyncio.create_task(deliver(client, wecom_app, user, counts)))
            if n == MESSAGES // 4:
                # Turns are being answered (the worker's runtime is open, its pool holds
                # connections): then the outage, with more messages coming in during it.
                await wait_for(lambda: len(fakes.wecom.sent) >= 3, 60)
                await asyncio.to_thread(_take_connections, name, False)
                back.append(loop.run_in_executor(None, _later_allowed, name))
            await asyncio.sleep(1 / RATE_PER_S)
        await asyncio.wait_for(asyncio.gather(*senders), timeout=60)
        await asyncio.gather(*back)
        await all_answered(fakes, MESSAGES, worker, log, OUTAGE_S + 60)
        await wait_broker_idle(private_redis.url)
    finally:
        await asyncio.gather(*back, return_exceptions=True)
        stop_worker(worker)
    replies = Counter(m["touser"] for m in fakes.wecom.sent)
    lost = [u for u in users if replies[u] == 0]
    duplicated = [u for u in users if replies[u] > 1]
    tried_again = log.read_text(errors="replace").count("database unavailable")
    report(
        f"database down {OUTAGE_S:.0f} s under {RATE_PER_S} msg/s: {MESSAGES} messages, "
        f"{tried_again} tries met the outage; {len(lost)} lost, {len(duplicated)} answered twice"
    )
    assert counts.delivered == MESSAGES
    assert lost == []
    assert duplicated == []
    assert tried_again > 0  # the outage met turns in flight: the test tested something


def _later_allowed(name: str) -> None:
    import time

    time.sleep(OUTAGE_S)
    _take_connections(name, True)
