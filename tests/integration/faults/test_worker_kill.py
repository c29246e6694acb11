"""A worker killed (SIGKILL) with 500 turns in flight: every message is answered exactly once.

500 customers write at once; the model takes 2 s an answer, so the worker holds every turn
at the same time. Once about a quarter of the answers are out, the worker is killed without
a warm shutdown (no ack, no cleanup: as if the machine died) while the rest wait on the
model or are being sent. A second worker takes the unacknowledged turns up again after the
visibility timeout. Counted: replies per customer (must be one each) and the resends WeCom
dropped with its duplicate check (parts whose first attempt had already been delivered).
"""

from __future__ import annotations

import contextlib
import signal
from collections import Counter

import pytest

from tests.integration.conftest import wait_for
from tests.integration.worker_process import (
    start_worker,
    stop_worker,
    wait_broker_idle,
    worker_env,
)
from tests.reports import report

TURNS = 500
CONCURRENCY = TURNS + 56  # every turn held at once, with room to spare


@pytest.mark.timeout(360)
async def test_worker_killed_with_500_turns_in_flight(
    make_settings, make_client, fakes, wecom_app, redis_url, tmp_path
) -> None:
    settings = make_settings(**fakes.sections(wecom_app), core={"rate_per_minute": 0})
    client = await make_client(settings)
    env = worker_env(
        settings,
        fakes,
        wecom_app,
        redis_url,
        BOT_BURST_WINDOW_S="0",
        BOT_RATE_PER_MINUTE="0",
        VLLM_TIMEOUT_S="30",
        AGENT_TIMEOUT_S="40",
        # As in production, the visibility timeout is above the longest turn: 500 turns at
        # once keep this 2-core machine's worker busy for up to ~30 s. Shorter, the broker
        # would hand out copies of turns still running (a misconfiguration, not a crash).
        BOT_BROKER_VISIBILITY_TIMEOUT_S="40",
        BOT_CONVERSATION_LOCK_TTL_S="10",
    )
    fakes.vllm.delay_s = 2.0
    users = [f"kill-{n:03d}" for n in range(TURNS)]
    for user in users:
        query, body = wecom_app.callback(f"问题 {user}", user=user)
        assert (await client.post("/webhooks/wecom", params=query, data=body)).status == 200
    first = start_worker(env, tmp_path, concurrency=CONCURRENCY, log=tmp_path / "first.log")
    try:
        await wait_for(lambda: len(fakes.wecom.sent) >= TURNS // 4, 120)
    finally:
        stop_worker(first, signal.SIGKILL)
    answered_before = len({m["touser"] for m in fakes.wecom.sent})
    model_calls_before = len(fakes.vllm.matching("/chat/completions"))
    second = start_worker(env, tmp_path, concurrency=CONCURRENCY, log=tmp_path / "second.log")
    try:
        with contextlib.suppress(AssertionError):  # counted and reported below
            await wait_for(lambda: len({m["touser"] for m in fakes.wecom.sent}) >= TURNS, 150)
        # Every turn over, none left to come back: no duplicate can arrive after this.
        await wait_broker_idle(redis_url)
    finally:
        stop_worker(second)
    replies = Counter(m["touser"] for m in fakes.wecom.sent)
    lost = [u for u in users if replies[u] == 0]
    twice = [u for u in users if replies[u] > 1]
    report(
        f"worker kill -9 with {TURNS} turns: {answered_before} answered before the kill, "
        f"{model_calls_before} model calls started by then; after a second worker took over: "
        f"{len(lost)} lost, {len(twice)} answered twice, "
        f"{fakes.wecom.suppressed} resends dropped by WeCom's duplicate check"
    )
    # The kill really hit turns in flight (at least 50 turns had called the model unanswered).
    assert model_calls_before - answered_before >= 50
    assert lost == [], (tmp_path / "second.log").read_text()[-3000:]
    assert twice == []
    assert all(m["content"] == f"ANSWER: 问题 {m['touser']}" for m in fakes.wecom.sent)
