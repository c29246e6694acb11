"""The sweeper closes AI-bot streams whose turn died, once, with the text so far: real Redis,
the fake response_url endpoint, and the lock that lets one worker of the fleet sweep."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from adapters.wecom_aibot import sweep as aibot_sweep
from adapters.wecom_aibot.adapter import stream_id_of
from adapters.wecom_aibot.state import SWEPT, StreamStore
from bot import runtime
from bot.errors import PlatformRejectedError
from tests.fakes.base import serve
from tests.fakes.wecom_aibot_api import AiBotFakeState, make_aibot_app
from tests.integration.adapters.test_wecom_aibot_send import Clock, make, reply

NOW = 1_800_000_000.0


@pytest.fixture
def fake() -> Iterator[AiBotFakeState]:
    state = AiBotFakeState()
    with serve(make_aibot_app(state)) as url:
        state.base_url = url
        yield state


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _open(redis: aioredis.Redis, msgid: str, url: str, deadline: float, text: str) -> str:
    sid = stream_id_of("default", msgid)
    store = StreamStore(redis, "default")
    await store.open(sid, event_id=msgid, deadline=deadline, response_url=url)
    if text:
        await store.append(sid, text)
    return sid


async def test_a_dead_turns_stream_is_closed_once_with_the_text_so_far(
    aredis: aioredis.Redis, fake: AiBotFakeState, http: aiohttp.ClientSession
) -> None:
    past = NOW - aibot_sweep.GRACE_S - 60  # the window ended long ago
    dead = await _open(aredis, "dead", fake.issue(), past, "退货请在签收后")
    silent = await _open(aredis, "silent", fake.issue(), past, "")
    slow = await _open(aredis, "slow", fake.issue(), NOW - 60, "还在写")  # within the grace

    assert await aibot_sweep.sweep(aredis, http, now=NOW) == 2
    contents = sorted(a["content"] for a in fake.answers)
    assert contents == sorted(
        [f"退货请在签收后\n\n{aibot_sweep.CUT_NOTE}", aibot_sweep.NOTHING_NOTE]
    )
    store = StreamStore(aredis, "default")
    for sid in (dead, silent):
        snap = await store.snapshot(sid)
        assert snap.status == SWEPT
        assert snap.finished  # a refresh now says finish, with the closing text
        assert snap.responded
    assert not (await store.snapshot(slow)).finished

    # Another round, or another worker's sweeper: nothing twice.
    assert await aibot_sweep.sweep(aredis, http, now=NOW) == 0
    assert len(fake.answers) == 2


async def test_a_late_worker_after_the_sweep_sends_nothing_twice(
    aredis: aioredis.Redis, fake: AiBotFakeState, http: aiohttp.ClientSession
) -> None:
    clock = Clock()
    clock.now = NOW
    url = fake.issue()
    deadline = NOW - aibot_sweep.GRACE_S - 1
    await _open(aredis, "m1", url, deadline, "半个")
    assert await aibot_sweep.sweep(aredis, http, now=NOW) == 1
    bot = make(aredis, clock)
    with pytest.raises(PlatformRejectedError, match="already used"):
        await bot.send(reply("完整的回答", msgid="m1", response_url=url, deadline=deadline), http)
    assert len(fake.answers) == 1


async def test_an_expired_response_url_still_closes_the_stream(
    aredis: aioredis.Redis, fake: AiBotFakeState, http: aiohttp.ClientSession
) -> None:
    sid = await _open(aredis, "old", fake.issue(age_s=4000), NOW - 1000, "半个")
    assert await aibot_sweep.sweep(aredis, http, now=NOW) == 1
    assert fake.answers == []
    assert (await StreamStore(aredis, "default").snapshot(sid)).status == SWEPT


async def test_one_worker_of_the_fleet_sweeps_each_round(
    aredis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    calls: list[float] = []

    async def sweeper(_redis: aioredis.Redis, _http: aiohttp.ClientSession, now: float) -> int:
        calls.append(now)
        return 1

    rounds = await asyncio.gather(*(runtime.sweep_once(aredis, http, [sweeper]) for _ in range(5)))
    assert sorted(rounds, key=str) == [1, None, None, None, None]
    assert len(calls) == 1
