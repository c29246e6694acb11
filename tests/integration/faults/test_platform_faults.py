"""The platforms' APIs fail for a while under load, then recover: every customer gets
exactly one answer.

A worker process answers 25 WeCom and 25 Feishu customers who write at 10 messages a
second, while both APIs' send calls go through four phases: HTTP 503, HTTP 429, the
platform's own rate-limit code (WeCom errcode 45009 with HTTP 200, Feishu code 230020 with
HTTP 400), then answers that never come back within our 10 s timeout although the message
was delivered (a lost answer: the dangerous case). Then they recover. Failed sends are tried
again in the worker (bot/pipeline/jobs.py). Both platforms offer idempotency and we use it:
a WeCom part whose earlier attempt may have arrived is resent with
`enable_duplicate_check`, and every Feishu reply carries a `uuid`; either way the platform
drops the repeat. Counted: send attempts refused in each phase, repeats the platforms
dropped, replies per customer (one each) and how long until every send settled.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.feishu import simulate as feishu_simulate
from tests.fakes.base import serve
from tests.fakes.feishu_api import FeishuFakeState, make_feishu_app
from tests.integration.conftest import wait_for
from tests.integration.faults.load import PlatformCounts, deliver
from tests.integration.worker_process import (
    start_worker,
    stop_worker,
    wait_broker_idle,
    worker_env,
)
from tests.reports import report

CUSTOMERS = 25  # per platform
RATE_PER_S = 10
WECOM_SEND = "/cgi-bin/message/send"
FEISHU_SEND = "/reply"
FS_TOKEN, FS_KEY, FS_BOT = "fault-verification-token", "fault encrypt key", "ou_fault_bot"
LOST = {"status": 504, "delay_s": 12.0, "after": True}  # past our 10 s client timeout
# (name, seconds, how WeCom's message/send fails, how Feishu's reply fails): fail_from_now's
# arguments.
PHASES: tuple[tuple[str, float, dict[str, Any], dict[str, Any]], ...] = (
    ("503", 1.5, {"status": 503}, {"status": 503}),
    ("429", 1.5, {"status": 429}, {"status": 429}),
    (
        "rate-limit code",
        1.0,
        {"status": 200, "body": {"errcode": 45009, "errmsg": "api freq out of limit"}},
        {"status": 400, "body": {"code": 230020, "msg": "chat frequency limit"}},
    ),
    ("lost answers", 1.5, LOST, LOST),
)


@pytest.fixture
def feishu_api() -> Iterator[tuple[FeishuFakeState, str]]:
    state = FeishuFakeState(app_id="cli_fault", app_secret="fault-secret", bot_open_id=FS_BOT)
    with serve(make_feishu_app(state)) as url:
        yield state, url


async def _outage(wecom: Any, feishu: Any, attempts: dict[str, tuple[int, int]]) -> None:
    """Run the phases; count the send attempts each one refused, per platform."""
    for name, seconds, wecom_failure, feishu_failure in PHASES:
        before = len(wecom.matching(WECOM_SEND)), len(feishu.matching(FEISHU_SEND))
        wecom.fail_from_now(**wecom_failure)
        feishu.fail_from_now(**feishu_failure)
        await asyncio.sleep(seconds)
        attempts[name] = (
            len(wecom.matching(WECOM_SEND)) - before[0],
            len(feishu.matching(FEISHU_SEND)) - before[1],
        )
    wecom.recover()
    feishu.recover()


async def _feishu_message(client: Any, user: str) -> None:
    now = int(time.time())
    headers, body = feishu_simulate.build_message(
        f"问题 {user}",
        app_id="cli_fault",
        verification_token=FS_TOKEN,
        encrypt_key=FS_KEY,
        user_open_id=user,
        message_id=f"om_{user}",
        chat_id=f"oc_{user}",
        event_id=secrets.token_hex(16),
        now=now,
        nonce=secrets.token_hex(8),
        iv=os.urandom(16),
    )
    assert (await client.post("/webhooks/feishu", data=body, headers=headers)).status == 200


@pytest.mark.timeout(120)
async def test_platform_apis_failing_lose_and_repeat_nothing(
    make_settings, make_client, fakes, wecom_app, feishu_api, redis_url, tmp_path
) -> None:
    feishu, feishu_url = feishu_api
    sections = fakes.sections(wecom_app)
    sections["feishu"] = {
        "app_id": feishu.app_id,
        "app_secret": feishu.app_secret,
        "verification_token": FS_TOKEN,
        "encrypt_key": FS_KEY,
        "api_base": feishu_url,
        "bot_open_id": FS_BOT,
    }
    settings = make_settings(**sections)
    client = await make_client(settings)
    env = worker_env(
        settings,
        fakes,
        wecom_app,
        redis_url,
        BOT_BURST_WINDOW_S="0",
        FEISHU_APP_ID=feishu.app_id,
        FEISHU_APP_SECRET=feishu.app_secret,
        FEISHU_VERIFICATION_TOKEN=FS_TOKEN,
        FEISHU_ENCRYPT_KEY=FS_KEY,
        FEISHU_API_BASE=feishu_url,
        FEISHU_BOT_OPEN_ID=FS_BOT,
    )
    log = tmp_path / "worker.log"
    worker = start_worker(env, tmp_path, concurrency=64, log=log)
    counts = PlatformCounts()
    wecom_users = [f"api-{n:02d}" for n in range(CUSTOMERS)]
    feishu_users = [f"ou_api_{n:02d}" for n in range(CUSTOMERS)]
    attempts: dict[str, tuple[int, int]] = {}
    try:
        # The worker is up and holds both tokens before the platforms start failing.
        await deliver(client, wecom_app, "api-warmup", counts)
        await _feishu_message(client, "ou_api_warmup")
        await wait_for(lambda: len(fakes.wecom.sent) == 1 and len(feishu.sent) == 1, 30)
        started = time.monotonic()
        outage = asyncio.create_task(_outage(fakes.wecom, feishu, attempts))
        for wecom_user, feishu_user in zip(wecom_users, feishu_users, strict=True):
            await deliver(client, wecom_app, wecom_user, counts)
            await asyncio.sleep(1 / RATE_PER_S)
            await _feishu_message(client, feishu_user)
            await asyncio.sleep(1 / RATE_PER_S)
        await outage
        await wait_for(lambda: len({m["touser"] for m in fakes.wecom.sent}) > CUSTOMERS, 60)
        await wait_for(lambda: len({m["text"] for m in feishu.sent}) > CUSTOMERS, 60)
        # Each lost answer times out after 10 s and is sent again: the platform drops it.
        lost_wecom, lost_feishu = attempts["lost answers"]
        await wait_for(lambda: fakes.wecom.suppressed >= lost_wecom, 60)
        await wait_for(lambda: feishu.repeats >= lost_feishu, 60)
        took = time.monotonic() - started
        # Every turn over, none left to come back: no second answer can arrive after this.
        await wait_broker_idle(redis_url)
    finally:
        fakes.wecom.recover()
        feishu.recover()
        stop_worker(worker)
    wecom_replies = Counter(m["touser"] for m in fakes.wecom.sent)
    feishu_replies = Counter(m["text"].removeprefix("ANSWER: 问题 ") for m in feishu.sent)
    for platform, users, replies, index, repeats in (
        ("WeCom", wecom_users, wecom_replies, 0, fakes.wecom.suppressed),
        ("Feishu", feishu_users, feishu_replies, 1, feishu.repeats),
    ):
        refused = ", ".join(f"{name} {s:.1f} s: {attempts[name][index]}" for name, s, *_ in PHASES)
        report(
            f"{platform} API failing under {RATE_PER_S} msg/s, send attempts refused per phase "
            f"({refused}); {CUSTOMERS} customers: {sum(replies[u] == 0 for u in users)} lost, "
            f"{sum(replies[u] > 1 for u in users)} answered twice, {repeats} repeats dropped "
            f"by the platform; every send settled {took:.1f} s after the outage began"
        )
        assert [u for u in users if replies[u] != 1] == [], log.read_text()[-3000:]
        # Every phase really refused sends.
        assert all(attempts[name][index] > 0 for name, *_ in PHASES), attempts
    assert all(m["content"] == f"ANSWER: 问题 {m['touser']}" for m in fakes.wecom.sent)
