"""Memory sessions and token usage on both databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from bot.agent import memory
from bot.db import records as db
from bot.db import usage
from bot.db.engine import get_engine
from bot.db.models import Message, TokenUsage
from bot.domain import InboundMessage, Platform
from bot.settings import Settings


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/bot.db"
    else:
        yield request.getfixturevalue("pg_url")


def _settings(tmp_path) -> Settings:
    return Settings.load(
        None, core={"data_dir": tmp_path, "session_idle_s": 1800, "memory_tokens": 1500}
    )


def _msg(app: str, event_id: str, text: str) -> InboundMessage:
    return InboundMessage(Platform.WEB, app, event_id, "conv", "u", text)


def _age(session: Session, row: Message, delta: timedelta) -> None:
    row.created_at = datetime.now(UTC) - delta
    session.add(row)
    session.commit()


def test_an_idle_gap_starts_a_new_session(database_url: str, tmp_path) -> None:
    settings = _settings(tmp_path)
    app = "mem-" + uuid.uuid4().hex[:8]
    with Session(get_engine(database_url)) as s:
        first = _msg(app, "e1", "我想退货")
        conv = db.ensure_conversation(s, first)
        old_in = db.record_inbound(s, conv, first)
        old_out = db.record_outbound(s, conv, first, "好的", backend="vllm", degraded=False)
        _age(s, old_in, timedelta(hours=1, minutes=1))
        _age(s, old_out, timedelta(hours=1))
        second = db.record_inbound(s, conv, _msg(app, "e2", "发票怎么开"))
        assert memory.recall(s, conv, second, settings) == []
        assert memory.recall(s, conv, second, settings) == []  # the same on redelivery
        third = db.record_inbound(s, conv, _msg(app, "e3", "要多久"))
        assert [(t.role, t.text) for t in memory.recall(s, conv, third, settings)] == [
            ("user", "发票怎么开")
        ]


def test_usage_is_recorded_once_and_reported_by_days(database_url: str) -> None:
    app = "usage-" + uuid.uuid4().hex[:8]
    with Session(get_engine(database_url)) as s:
        conv = db.ensure_conversation(s, _msg(app, "e1", "你好"))
        common = {"conversation_id": conv.id or 0, "purpose": "answer", "backend": "vllm"}
        assert usage.record(s, message_id=1, prompt_tokens=100, completion_tokens=20, **common)
        # A redelivered task records nothing twice.
        assert not usage.record(s, message_id=1, prompt_tokens=100, completion_tokens=20, **common)
        assert usage.record(s, message_id=2, prompt_tokens=50, completion_tokens=5, **common)
        assert not usage.record(s, message_id=3, prompt_tokens=0, completion_tokens=0, **common)
        old = s.exec(select(TokenUsage).where(TokenUsage.message_id == 2)).one()
        old.created_at = datetime.now(UTC) - timedelta(days=10)
        s.add(old)
        s.commit()

        def totals(days: int) -> list[tuple[int, int, int]]:
            return [
                (a["prompt_tokens"], a["completion_tokens"], a["calls"])
                for a in usage.report(s, days)["per_app"]
                if a["app"] == app
            ]

        assert totals(7) == [(100, 20, 1)]
        assert totals(30) == [(150, 25, 2)]


def test_the_summary_step_runs_exactly_when_a_summary_is_due(database_url: str, tmp_path) -> None:
    """`needs_summary` (decided from what the turn read and wrote, no query) agrees with
    what `condense` would find in the database, turn after turn: short and long turns, a
    summary written, a restart, an answer memory does not show."""
    settings = Settings.load(
        None, core={"data_dir": tmp_path, "memory_tokens": 160, "history_turns": 6}
    )
    app = "due-" + uuid.uuid4().hex[:8]
    texts = [
        "你好",
        "我的订单" * 6,
        "多久到",
        "重新开始",
        "发票",
        "退货要怎么操作呢" * 4,
        "好",
        "谢谢",
    ]
    due_seen = summarised = 0
    with Session(get_engine(database_url)) as s:
        for i, text in enumerate(texts * 3):
            msg = _msg(app, f"e{i}", text)
            conv_id, _ = db.conversation_of(s, msg)
            inbound = db.record_inbound(s, conv_id, msg, commit=False)
            recalled = memory.recall_turn(s, conv_id, inbound, settings)
            backend = "command" if memory.is_reset(msg) else ("ratelimit" if i % 7 == 6 else "vllm")
            out = db.record_outbound(
                s, conv_id, msg, "答复" * (i % 5 + 1), backend=backend, degraded=False
            )
            said = [x for x in (memory.said(inbound), memory.said(out)) if x is not None]
            due = memory.needs_summary(recalled, said, settings)
            plan = memory._plan(s, conv_id, settings)
            assert due == (plan is not None), (i, text)
            due_seen += due
            if plan is not None and i % 2:  # write a summary now and then, as condense does
                assert memory._write(s, conv_id, plan, "客户问过订单", "", 0, 0)
                summarised += 1
    assert due_seen >= 3
    assert summarised >= 1
