"""The Redis lease behind single-holder long connections, on a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from bot.stream.lease import Lease, run_while_holding
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.timeout(30)


async def test_only_one_holder(aredis) -> None:
    a = Lease(aredis, "stream:test:default:holder", ttl_s=5)
    b = Lease(aredis, "stream:test:default:holder", ttl_s=5)
    assert await a.try_acquire()
    assert not await b.try_acquire()
    # Taking it again is a renewal for the holder.
    assert await a.try_acquire()
    assert await a.holder() == a.owner
    assert not await b.renew()
    assert not await b.release()
    assert await a.holder() == a.owner


async def test_release_frees_it_at_once(aredis) -> None:
    a = Lease(aredis, "lease:x", ttl_s=30)
    b = Lease(aredis, "lease:x", ttl_s=30)
    assert await a.try_acquire()
    assert await a.release()
    assert await a.holder() is None
    assert await b.try_acquire()
    # The old holder cannot renew or release the successor's lease.
    assert not await a.renew()
    assert not await a.release()
    assert await b.holder() == b.owner


async def test_takeover_after_the_holder_stops_renewing(aredis) -> None:
    a = Lease(aredis, "lease:y", ttl_s=1.0)
    b = Lease(aredis, "lease:y", ttl_s=1.0, poll_s=0.1)
    assert await a.try_acquire()
    loop = asyncio.get_running_loop()
    started = loop.time()
    # `a` dies silently: no renew, no release.
    assert await asyncio.wait_for(b.wait_acquire(), 5)
    waited = loop.time() - started
    # Not before the TTL ran out; the upper bound leaves room for a loaded CI machine.
    assert 0.5 < waited < 3.0
    assert not await a.renew()


async def test_a_renewing_holder_keeps_it(aredis) -> None:
    a = Lease(aredis, "lease:z", ttl_s=1.5)
    b = Lease(aredis, "lease:z", ttl_s=1.5)
    assert await a.try_acquire()
    keeper = asyncio.create_task(a.keep())
    try:
        for _ in range(10):  # 3 s: twice the TTL, so only renewals can explain it
            await asyncio.sleep(0.3)
            assert not await b.try_acquire()
    finally:
        keeper.cancel()
    assert await a.holder() == a.owner


async def test_run_while_holding_runs_one_worker_and_hands_over(aredis) -> None:
    running: list[str] = []
    stops = {"a": asyncio.Event(), "b": asyncio.Event()}
    leases = {n: Lease(aredis, "lease:w", ttl_s=5.0, poll_s=0.05) for n in stops}

    def work_for(name: str):
        async def work() -> None:
            running.append(name)
            try:
                await asyncio.Event().wait()
            finally:
                running.remove(name)

        return work

    tasks = {
        n: asyncio.create_task(run_while_holding(leases[n], work_for(n), stops[n])) for n in stops
    }
    try:
        await wait_for(lambda: bool(running), timeout_s=5)
        await asyncio.sleep(0.5)
        assert len(running) == 1
        first = running[0]
        other = "b" if first == "a" else "a"
        # A clean stop releases the lease: the other takes over well within the TTL.
        stops[first].set()
        await wait_for(lambda: running == [other], timeout_s=2.5)
        await asyncio.wait_for(tasks[first], 2)
        assert await leases[other].holder() == leases[other].owner
    finally:
        for n in stops:
            stops[n].set()
        await asyncio.wait_for(asyncio.gather(*tasks.values()), 5)
    assert running == []
    assert await leases["a"].holder() is None
