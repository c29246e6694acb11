"""A `bot worker` killed mid-stream on a Feishu streaming card whose turn does not come back
in time: the workers' sweeper (as bot/wiring.py registers it) ends the card with the text so
far and the note, streaming mode off; the turn redelivered after that adds no second answer.
"""

from __future__ import annotations

import secrets
import signal
import time

import aiohttp
import pytest
import redis.asyncio as aioredis

from adapters.feishu import sweep as feishu_sweep
from bot import wiring
from tests.fakes.base import serve
from tests.fakes.feishu_api import FeishuFakeState, make_feishu_app
from tests.integration.conftest import wait_for
from tests.integration.pipeline.test_feishu_end_to_end import BOT, KEY, TOKEN, message
from tests.integration.worker_process import start_worker, stop_worker, worker_env

ANSWER = "ANSWER: 你们支持哪些支付方式"


@pytest.mark.timeout(120)
async def test_a_card_left_by_a_killed_worker_is_swept_once(
    make_settings, make_client, fakes, wecom_app, redis_url, tmp_path
) -> None:
    state = FeishuFakeState(app_id="cli_e2e", app_secret=secrets.token_urlsafe(16), bot_open_id=BOT)
    with serve(make_feishu_app(state)) as url:
        feishu = {
            "FEISHU_APP_ID": state.app_id,
            "FEISHU_APP_SECRET": state.app_secret,
            "FEISHU_VERIFICATION_TOKEN": TOKEN,
            "FEISHU_ENCRYPT_KEY": KEY,
            "FEISHU_API_BASE": url,
            "FEISHU_BOT_OPEN_ID": BOT,
            "FEISHU_STREAMING_CARDS": "true",
            "FEISHU_CARD_UPDATES_PER_S": "10",
        }
        section = {k.removeprefix("FEISHU_").lower(): v for k, v in feishu.items()}
        settings = make_settings(**fakes.sections(wecom_app), feishu=section)
        client = await make_client(settings)
        env = worker_env(
            settings,
            fakes,
            wecom_app,
            redis_url,
            **feishu,
            VLLM_TIMEOUT_S="60",
            BOT_BROKER_VISIBILITY_TIMEOUT_S="2",
            BOT_CONVERSATION_LOCK_TTL_S="2",
        )
        fakes.vllm.chunk_chars = 2
        fakes.vllm.chunk_delay_s = 1.0  # slow enough to kill the worker between two pieces

        first = start_worker(env, tmp_path, concurrency=4, log=tmp_path / "worker1.log")
        try:
            headers, body = message("你们支持哪些支付方式", message_id="om_swept_1")
            resp = await client.post("/webhooks/feishu", data=body, headers=headers)
            assert resp.status == 200
            await wait_for(
                lambda: (
                    bool(state.card_messages()) and any(c.updates for c in state.cards.values())
                ),
                timeout_s=30,
            )
        finally:
            stop_worker(first, signal.SIGKILL)  # mid-answer, unacked
        card = next(iter(state.cards.values()))
        assert card.streaming
        so_far = card.text()
        assert so_far
        assert ANSWER.startswith(so_far)

        # No turn wrote for the sweeper's grace: the sweepers the workers run, called by two
        # "workers" (each with its own Redis connection), end the card once.
        sweepers = wiring.sweepers(settings)
        later = time.time() + feishu_sweep.GRACE_S + 1
        clients = [aioredis.from_url(redis_url) for _ in range(2)]
        try:
            async with aiohttp.ClientSession() as http:
                ended = [sum([await s(r, http, later) for s in sweepers]) for r in clients]
        finally:
            for r in clients:
                await r.aclose()
        assert ended == [1, 0]
        # The sweeper ends the card with the text noted in Redis, which the worker writes
        # before each update: whenever it was killed, nothing the card showed is lost (killed
        # between the note and the update, the swept text has that one piece more).
        swept = card.text()
        assert swept.endswith(f"\n\n{feishu_sweep.CUT_NOTE}")
        kept = swept.removesuffix(f"\n\n{feishu_sweep.CUT_NOTE}")
        assert kept.startswith(so_far)
        assert ANSWER.startswith(kept)
        assert not card.streaming
        assert card.closed_at_sequence > card.updates[-1][0]

        # The message comes back to a worker after all: it answers no second time.
        fakes.vllm.chunk_delay_s = 0.05
        second = start_worker(env, tmp_path, concurrency=4, log=tmp_path / "worker2.log")
        log = tmp_path / "worker2.log"
        try:
            await wait_for(lambda: "om_swept_1 via" in log.read_text(errors="replace"), 60)
        finally:
            stop_worker(second)
        assert len(fakes.vllm.matching("/chat/completions")) == 2  # the turn did run again
        assert len(state.cards) == 1
        assert [m.get("card_id") for m in state.sent] == [card.card_id]  # no plain reply
        assert card.text() == swept
