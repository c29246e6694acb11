"""A `bot worker` killed mid-stream on a Feishu message answered in a streaming card: the
redelivered turn finishes the same card (sequences still increasing), closes it, and the
message gets one answer: no second card, no plain reply."""

from __future__ import annotations

import secrets
import signal

import pytest

from tests.fakes.base import serve
from tests.fakes.feishu_api import FeishuFakeState, make_feishu_app
from tests.integration.conftest import wait_for
from tests.integration.pipeline.test_feishu_end_to_end import BOT, KEY, TOKEN, message
from tests.integration.worker_process import start_worker, stop_worker, worker_env


@pytest.mark.timeout(120)
async def test_worker_killed_mid_stream_finishes_the_same_card(
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
            # Unacked messages come back after 2 s, locks expire in 2 s.
            BOT_BROKER_VISIBILITY_TIMEOUT_S="2",
            BOT_CONVERSATION_LOCK_TTL_S="2",
        )
        fakes.vllm.chunk_chars = 2
        fakes.vllm.chunk_delay_s = 1.0  # slow enough to kill the worker between two pieces
        answer = "ANSWER: 你们支持哪些支付方式"

        first = start_worker(env, tmp_path, concurrency=4, log=tmp_path / "worker1.log")
        try:
            headers, body = message("你们支持哪些支付方式", message_id="om_crash_1")
            resp = await client.post("/webhooks/feishu", data=body, headers=headers)
            assert resp.status == 200
            # The card is shown and has been typed into at least once.
            await wait_for(
                lambda: (
                    bool(state.card_messages()) and any(c.updates for c in state.cards.values())
                ),
                timeout_s=30,
            )
        finally:
            stop_worker(first, signal.SIGKILL)  # mid-answer, unacked: as if the machine died
        card = next(iter(state.cards.values()))
        assert card.streaming
        before = card.sequence

        fakes.vllm.chunk_delay_s = 0.1
        second = start_worker(env, tmp_path, concurrency=4, log=tmp_path / "worker2.log")
        try:
            await wait_for(lambda: not card.streaming, timeout_s=60)
        finally:
            stop_worker(second)
        assert len(state.cards) == 1
        assert [m.get("card_id") for m in state.sent] == [card.card_id]
        seqs = [u[0] for u in card.updates]
        assert seqs == sorted(set(seqs))
        assert max(seqs) > before
        assert card.text().startswith(answer)
        assert card.closed_at_sequence > seqs[-1]
        # Every update showed a beginning of the answer (the new attempt restarted cleanly).
        assert all(answer.startswith(u[2]) or u[2] == card.text() for u in card.updates)
