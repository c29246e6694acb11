"""Both models hang under load: every customer still gets exactly one answer, soon.

A worker process serves 40 WeCom customers while the vLLM server and DashScope accept
connections and never answer (the fakes sleep far past the 1 s client timeouts). Counted:
answers per customer (one each), how long the last one took, and how many calls reached
each model (the circuit breakers stop calling a dead backend, so later turns do not wait
out its timeout).
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from bot.agent.agent import HUMAN_FOLLOW_UP_TEXT
from tests.integration.conftest import wait_for
from tests.integration.worker_process import (
    start_worker,
    stop_worker,
    wait_broker_idle,
    worker_env,
)
from tests.reports import report

CUSTOMERS = 40
HANG_S = 120.0  # longer than the test: the models never answer
TIMEOUT_S = "1"


@pytest.mark.timeout(180)
async def test_hanging_models_lose_no_customer(
    redis_url, make_settings, make_client, fakes, wecom_app, tmp_path
) -> None:
    settings = make_settings(**fakes.sections(wecom_app))
    client = await make_client(settings)
    fakes.vllm.delay_s = HANG_S
    fakes.dashscope.delay_s = HANG_S
    env = worker_env(
        settings,
        fakes,
        wecom_app,
        redis_url,
        BOT_BURST_WINDOW_S="0",
        VLLM_TIMEOUT_S=TIMEOUT_S,
        DASHSCOPE_TIMEOUT_S=TIMEOUT_S,
    )
    worker = start_worker(env, tmp_path, concurrency=16, log=tmp_path / "worker.log")
    users = [f"hang-{n}" for n in range(CUSTOMERS)]
    started = time.monotonic()
    try:
        for user in users:
            # Questions the knowledge base cannot answer: the only honest reply is the
            # promise that a person follows up.
            query, body = wecom_app.callback(f"第{user}号的量子纠缠保修吗", user=user)
            assert (await client.post("/webhooks/wecom", params=query, data=body)).status == 200
        await wait_for(lambda: len(fakes.wecom.sent) >= CUSTOMERS, 120)
        took = time.monotonic() - started
        # Every turn over, none left to come back: no second answer can arrive after this.
        await wait_broker_idle(redis_url)
    finally:
        stop_worker(worker)
    replies = Counter(m["touser"] for m in fakes.wecom.sent)
    texts = Counter(m["content"] for m in fakes.wecom.sent)
    vllm_calls = len(fakes.vllm.matching("/chat/completions"))
    dashscope_calls = len(fakes.dashscope.matching("/generation"))
    report(
        f"both models hanging, {CUSTOMERS} customers, {TIMEOUT_S} s timeouts: "
        f"{sum(1 for u in users if replies[u] == 1)} answered once, "
        f"{sum(1 for u in users if replies[u] == 0)} lost, "
        f"{sum(1 for u in users if replies[u] > 1)} twice, all answered in {took:.1f} s; "
        f"model calls that reached vLLM {vllm_calls}, DashScope {dashscope_calls}"
    )
    assert [u for u in users if replies[u] != 1] == []
    assert texts[HUMAN_FOLLOW_UP_TEXT] == CUSTOMERS
    # The breakers opened: far fewer calls than one per customer and backend.
    assert vllm_calls < CUSTOMERS
    assert dashscope_calls < CUSTOMERS
