"""Conversation memory end to end: token budget, model summary, idle sessions, "重新开始".

Web chat → real Redis/Celery worker → agent → the fake vLLM; what the model received is read
back from the fake, and the memory row from SQLite.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from sqlmodel import Session, select

from bot.agent import memory
from bot.agent.prompt import DATA_CLOSE, DATA_OPEN
from bot.db.engine import get_engine
from bot.db.models import ConversationMemory, Message, TokenUsage
from tests.integration.conftest import wait_for
from tests.integration.webchat import as_user

BUDGET = 200


@pytest.fixture
async def chat(make_settings, make_client, celery_worker, fakes, wecom_app):
    """Post a web chat message and return its reply; the stack has a small memory budget."""
    settings = make_settings(
        **fakes.sections(wecom_app),
        core={"memory_tokens": BUDGET, "history_turns": 50, "session_idle_s": 1.0},
        # Long unrelated questions look like low-confidence turns to the handoff triggers.
        handoff={"active": False},
    )
    client = await make_client(settings)
    celery_worker(settings)

    async def send(user: str, text: str) -> str:
        resp = await client.post("/api/chat", json={**await as_user(client, user), "text": text})
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["reply"])

    send.settings = settings  # type: ignore[attr-defined]
    return send


def _calls(fakes) -> list[list[dict[str, Any]]]:
    return [r.json["messages"] for r in fakes.vllm.matching("/chat/completions")]


def _is_summary_call(messages: list[dict[str, Any]]) -> bool:
    return messages[0]["content"].startswith("你是客服对话摘要助手")


def _history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The memory part of an answer prompt, as memory handed it to the agent: the summary
    turn (now fenced data inside the one system message) and the turns between the system
    message and the user's message."""
    found = re.search(
        f"{DATA_OPEN}\n({re.escape(memory.SUMMARY_PREFIX)}.*?)\n{DATA_CLOSE}",
        str(messages[0]["content"]),
        re.S,
    )
    summary = [{"role": "system", "content": found.group(1)}] if found else []
    assert all(m["role"] != "system" for m in messages[1:])
    return summary + messages[1:-1]


def _tokens(history: list[dict[str, Any]]) -> int:
    return sum(memory.turn_tokens(m["content"]) for m in history)


_QUESTIONS = (
    "我上周买的扫地机器人一直提示电量不足无法回充，我已经重启过两次也没有用，请问应该怎么处理才好呢？",
    "另外我想问一下，如果维修需要寄回去的话，运费是由谁来承担，大概需要多少个工作日才能修好寄回来？",
    "还有一件事，我去年在你们店里买的空气净化器滤网该换了，请问原装滤网在哪里可以买到，价格是多少？",
    "最后想确认一下发票的问题，我之前下单的时候忘记填写公司抬头了，现在还能补开增值税专用发票吗？",
)


_ANSWER = (
    "我们已经记录了您的问题，会按照售后政策尽快为您处理，请您保持电话畅通，谢谢您的耐心等待和理解。"
)


def _question(i: int) -> str:
    return _QUESTIONS[i - 1]


def _answer(i: int) -> str:
    return f"第{i}个回答：" + _ANSWER


async def test_long_history_is_summarised_by_the_model_within_the_budget(chat, fakes) -> None:
    per_turn = memory.turn_tokens(_question(1))
    assert 2 * per_turn <= BUDGET < 4 * per_turn  # one exchange fits, two do not
    fakes.vllm.script(_answer(1))
    assert await chat("mem-1", _question(1)) == _answer(1)
    # The second exchange overflows the budget: after its reply the worker asks the model
    # (the next scripted reply) to summarise, off the answer's path.
    summary = "客户的扫地机器人无法回充，已建议清洁充电座触点。"
    fakes.vllm.script(_answer(2), summary)
    assert await chat("mem-1", _question(2)) == _answer(2)
    await wait_for(lambda: len(_calls(fakes)) == 3)
    summary_call = _calls(fakes)[2]
    assert _is_summary_call(summary_call)
    told = summary_call[-1]["content"]
    assert _question(1) in told  # the model saw the turns it summarised
    assert _answer(2) in told

    fakes.vllm.script(_answer(3))
    await chat("mem-1", _question(3))
    third = _history(_calls(fakes)[3])
    assert third == [{"role": "system", "content": memory.SUMMARY_PREFIX + summary}]
    fakes.vllm.script(_answer(4))
    await chat("mem-1", _question(4))
    fourth = _history(_calls(fakes)[4])
    assert [m["content"] for m in fourth] == [
        memory.SUMMARY_PREFIX + summary,
        _question(3),
        _answer(3),
    ]
    for prompt in _calls(fakes):
        if not _is_summary_call(prompt):
            assert _tokens(_history(prompt)) <= BUDGET
    engine = get_engine(chat.settings.core.effective_database_url())
    with Session(engine) as s:
        row = s.exec(select(ConversationMemory)).one()
        assert row.summary == summary
        spent = s.exec(select(TokenUsage).where(TokenUsage.purpose == "summary")).all()
        assert [u.completion_tokens for u in spent] == [len(summary)]  # the fake counts chars


async def test_without_a_model_the_older_turns_get_an_extractive_summary(
    make_settings, make_client, celery_worker
) -> None:
    settings = make_settings(
        core={"memory_tokens": 300, "history_turns": 50}, handoff={"active": False}
    )
    client = await make_client(settings)
    celery_worker(settings)
    for i in (1, 2, 3, 4):  # degraded answers are short: it takes more turns to overflow
        resp = await client.post(
            "/api/chat", json={**await as_user(client, "mem-2"), "text": _question(i)}
        )
        assert resp.status == 200, await resp.text()
    engine = get_engine(settings.core.effective_database_url())

    def summary() -> str:
        with Session(engine) as s:
            row = s.exec(select(ConversationMemory)).first()
            return row.summary if row is not None else ""

    await wait_for(lambda: summary() != "")
    assert summary().startswith("客户先前提到：")
    # Every summarised question keeps its start within the summary's share of the budget.
    assert all(_question(i)[:8] in summary() for i in (1, 2, 3, 4))
    assert memory.estimate_tokens(summary()) <= 75


async def test_idle_time_starts_a_new_session(chat, fakes) -> None:
    await chat("mem-3", "我想退货")
    await asyncio.sleep(1.3)  # longer than BOT_SESSION_IDLE_S=1
    await chat("mem-3", "发票怎么开")
    assert _history(_calls(fakes)[1]) == []
    await chat("mem-3", "要多久")  # right after: the new session goes on
    assert [m["content"] for m in _history(_calls(fakes)[2])] == [
        "发票怎么开",
        "ANSWER: 发票怎么开",
    ]


async def test_restart_command_resets_at_once_without_a_model_call(chat, fakes) -> None:
    await chat("mem-4", "我想退货")
    assert await chat("mem-4", "重新开始") == memory.RESET_TEXT
    assert len(_calls(fakes)) == 1
    assert await chat("mem-4", " /NEW ") == memory.RESET_TEXT
    await chat("mem-4", "发票怎么开")
    assert len(_calls(fakes)) == 2
    assert _history(_calls(fakes)[1]) == []
    engine = get_engine(chat.settings.core.effective_database_url())
    with Session(engine) as s:
        texts = [m.text for m in s.exec(select(Message).order_by(Message.id))]  # type: ignore[arg-type]
    assert "重新开始" in texts  # stored, just not remembered
    assert memory.RESET_TEXT in texts
