"""The model summary runs after the conversation lock: the next turn never waits for it."""

from __future__ import annotations

import time
from typing import Any

from sqlmodel import Session, select

from bot.agent import memory
from bot.db.engine import get_engine
from bot.db.models import ConversationMemory, TokenUsage
from tests.integration.agent.test_memory import BUDGET, _answer, _question
from tests.integration.conftest import wait_for
from tests.integration.webchat import as_user

SLOW_S = 3.0  # the summary call takes this long


def _sections(fakes, wecom_app) -> dict[str, Any]:
    """The memory stack, with a model patient enough to wait out the slow summary."""
    sections = fakes.sections(wecom_app)
    sections["vllm"] = {**sections["vllm"], "timeout_s": 10}
    return {
        **sections,
        "core": {"memory_tokens": BUDGET, "history_turns": 50, "summary_timeout_s": 10},
        "handoff": {"active": False},
    }


def _prompts(fakes) -> list[list[dict[str, Any]]]:
    return [r.json["messages"] for r in fakes.vllm.matching("/chat/completions")]


def _summary_calls(fakes) -> int:
    return sum(1 for m in _prompts(fakes) if m[0]["content"].startswith("你是客服对话摘要助手"))


def _answer_prompt(fakes, question: str) -> str:
    [prompt] = [m for m in _prompts(fakes) if m[-1]["content"] == question]
    return str(prompt[0]["content"])


async def test_the_next_turn_does_not_wait_for_a_slow_summary(
    make_settings, make_client, fakes, wecom_app, celery_worker
) -> None:
    # celery_worker last: torn down first, it finishes a summary still in flight while the
    # fake model is up (a call into a stopped fake leaves an unclosed socket behind).
    settings = make_settings(**_sections(fakes, wecom_app))
    client = await make_client(settings)
    celery_worker(settings)

    async def send(text: str) -> tuple[str, float]:
        started = time.monotonic()
        resp = await client.post("/api/chat", json={**await as_user(client, "slow"), "text": text})
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["reply"]), time.monotonic() - started

    fakes.vllm.script(_answer(1))
    await send(_question(1))
    summary = "客户的扫地机器人无法回充，也问了维修运费。"
    fakes.vllm.script(_answer(2))
    # Turn 2 overflows the budget: its answer comes at once, the summary after it slowly.
    fakes.vllm.fail_next(1, status=200)
    fakes.vllm.fail_next(1, status=200, delay_s=SLOW_S)
    assert (await send(_question(2)))[0] == _answer(2)
    await wait_for(lambda: _summary_calls(fakes) == 1)

    # The fake picks its scripted reply when it answers: turn 3 first, the summary later.
    fakes.vllm.script(_answer(3), summary)
    reply, took = await send(_question(3))
    assert reply == _answer(3)
    assert took < SLOW_S - 1, f"turn 3 waited {took:.1f}s for the summary"
    # The model's summary was not ready: turn 3 had the extractive one instead.
    third = _answer_prompt(fakes, _question(3))
    assert memory.SUMMARY_PREFIX + "客户先前提到：" in third
    assert summary not in third

    engine = get_engine(settings.core.effective_database_url())

    def stored() -> str:
        with Session(engine) as s:
            row = s.exec(select(ConversationMemory)).first()
            return row.summary if row is not None else ""

    await wait_for(lambda: stored() == summary, timeout_s=SLOW_S + 5)
    assert _summary_calls(fakes) == 1  # turn 3 left it to the summary in flight
    fakes.vllm.script(_answer(4))
    await send(_question(4))
    assert memory.SUMMARY_PREFIX + summary in _answer_prompt(fakes, _question(4))
    with Session(engine) as s:
        spent = s.exec(select(TokenUsage).where(TokenUsage.purpose == "summary")).all()
        assert len(spent) >= 1
        assert spent[0].completion_tokens == len(summary)


async def test_a_summary_of_a_session_reset_meanwhile_is_dropped(
    make_settings, make_client, fakes, wecom_app, celery_worker
) -> None:
    # celery_worker last: torn down first, it finishes a summary still in flight while the
    # fake model is up (a call into a stopped fake leaves an unclosed socket behind).
    settings = make_settings(**_sections(fakes, wecom_app))
    client = await make_client(settings)
    celery_worker(settings)

    async def send(text: str) -> str:
        resp = await client.post("/api/chat", json={**await as_user(client, "reset"), "text": text})
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["reply"])

    fakes.vllm.script(_answer(1))
    await send(_question(1))
    fakes.vllm.script(_answer(2), "旧会话的摘要，不应出现在新会话里。")
    fakes.vllm.fail_next(1, status=200)
    fakes.vllm.fail_next(1, status=200, delay_s=SLOW_S)
    await send(_question(2))
    await wait_for(lambda: _summary_calls(fakes) == 1)
    assert await send("重新开始") == memory.RESET_TEXT  # while the summary is being written
    await wait_for(lambda: len(fakes.vllm.matching("/chat/completions")) == 3)
    await _settle(SLOW_S + 1)
    with Session(get_engine(settings.core.effective_database_url())) as s:
        row = s.exec(select(ConversationMemory)).one()
        assert row.summary == ""
        assert row.summarised_upto_id == 0


async def _settle(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
