"""A `bot worker` killed mid-stream on a WeCom 智能机器人 message: the redelivered turn
streams the answer again from the start, and the stream finishes once with one answer."""

from __future__ import annotations

import asyncio
import secrets
import signal
import time

import pytest

from adapters.wecom_aibot import simulate
from tests.integration.conftest import wait_for
from tests.integration.pipeline.test_wecom_aibot_end_to_end import KEY, TOKEN, post
from tests.integration.worker_process import start_worker, stop_worker, worker_env


@pytest.mark.timeout(120)
async def test_worker_killed_mid_stream_ends_with_one_finished_answer(
    make_settings, make_client, fakes, wecom_app, redis_url, tmp_path
) -> None:
    settings = make_settings(
        **fakes.sections(wecom_app), wecom_aibot={"token": TOKEN, "aes_key": KEY}
    )
    client = await make_client(settings)
    env = worker_env(
        settings,
        fakes,
        wecom_app,
        redis_url,
        WECOM_AIBOT_TOKEN=TOKEN,
        WECOM_AIBOT_AES_KEY=KEY,
        VLLM_TIMEOUT_S="60",
        # Short enough for a test: unacked messages come back after 2 s, locks expire in 2 s.
        BOT_BROKER_VISIBILITY_TIMEOUT_S="2",
        BOT_CONVERSATION_LOCK_TTL_S="2",
    )
    fakes.vllm.chunk_chars = 2
    fakes.vllm.chunk_delay_s = 1.0  # slow enough to kill the worker between two pieces
    question = "你们支持哪些支付方式"

    async def refresh(sid: str) -> dict:
        answer = await post(client, simulate.refresh(sid, msgid=secrets.token_hex(8)))
        assert answer is not None
        return answer["stream"]

    first = start_worker(env, tmp_path, concurrency=4, log=tmp_path / "worker1.log")
    try:
        opened = await post(client, simulate.text_message(question, msgid="aibot-crash-1"))
        assert opened is not None
        sid = opened["stream"]["id"]
        partial = ""
        deadline = time.monotonic() + 30
        while not partial and time.monotonic() < deadline:
            partial = (await refresh(sid))["content"]
            await asyncio.sleep(0.05)
        assert partial, "the first worker never streamed a piece"
    finally:
        stop_worker(first, signal.SIGKILL)  # mid-answer, unacked: as if the machine died
    half = await refresh(sid)
    assert half["finish"] is False
    assert "ANSWER: 你们支持哪些支付方式".startswith(half["content"])

    fakes.vllm.chunk_delay_s = 0.2  # refreshes see the new attempt being written too
    second = start_worker(env, tmp_path, concurrency=4, log=tmp_path / "worker2.log")
    try:
        seen: list[dict] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen.append(await refresh(sid))
            if seen[-1]["finish"]:
                break
            await asyncio.sleep(0.1)
        final = seen[-1]
        assert final["finish"], f"not finished; last refreshes {seen[-3:]}"
        assert final["content"].startswith("ANSWER: 你们支持哪些支付方式")
        # Every refresh showed a beginning of the answer: never the dead attempt's half
        # text followed by the new attempt's.
        assert all(final["content"].startswith(s["content"]) for s in seen), seen
        await asyncio.sleep(3)  # time for any second redelivery to (not) answer again
        again = await refresh(sid)
        assert again == final
        await wait_for(lambda: len(fakes.vllm.matching("/chat/completions")) == 2)
    finally:
        stop_worker(second)
