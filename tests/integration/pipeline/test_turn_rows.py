"""A turn's rows, written the three ways the worker can: SQLAlchemy in the database threads
on SQLite and on PostgreSQL, and one asyncpg statement per step on PostgreSQL (the way a
worker on PostgreSQL takes). Each scenario runs on all three and must give the same rows,
the same memory and the same session decisions."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from bot import metrics
from bot.agent import memory
from bot.agent.agent import Answer
from bot.agent.trace import MODEL
from bot.db import pg
from bot.db.engine import Database
from bot.db.models import (
    Conversation,
    ConversationMemory,
    Delivery,
    HandoffEvent,
    Message,
    TokenUsage,
    TurnRecord,
    aware,
)
from bot.db.records import VOICE_MARK
from bot.domain import Content, InboundMessage, MessageKind, Platform, Turn
from bot.errors import TransientError
from bot.orders.bindings import BindingSource, BindingStore
from bot.pipeline.turn_rows import ThreadedRows, TurnRows
from bot.pipeline.turn_rows_pg import PgRows
from bot.settings import Settings
from tests.conftest import postgresql_database


@dataclass
class Store:
    rows: TurnRows
    db: Database
    settings: Settings

    def session(self) -> Session:
        return Session(self.db.engine)

    def count(self, model: type) -> int:
        with self.session() as s:
            return len(s.exec(select(model)).all())


@pytest.fixture(params=["sqlite-threads", "postgresql-threads", "postgresql-asyncpg"])
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Store]:
    if request.param.startswith("sqlite"):
        url = f"sqlite:///{tmp_path}/bot.db"
    else:
        url = postgresql_database(request)  # dropped after this fixture's teardown
    db = Database(url, threads=2)  # makes the tables, as the worker's runtime does first
    rows = _rows(request.param, url, db)
    settings = Settings.load(
        None, core={"data_dir": tmp_path, "session_idle_s": 1800, "memory_tokens": 1500}
    )
    yield Store(rows, db, settings)
    await rows.close()
    db.close()


def _rows(way: str, url: str, db: Database) -> TurnRows:
    """The turn's rows the way `way` names: one asyncpg statement per step, or `db`'s threads."""
    return PgRows(pg.Pool(url)) if way.endswith("asyncpg") else ThreadedRows(db)


def _msg(text: str, *, event_id: str = "", **fields) -> InboundMessage:
    return InboundMessage(
        Platform.WECOM, "app", event_id or uuid.uuid4().hex, "conv-1", "user-1", text, **fields
    )


async def _turn(store: Store, text: str, answer: str) -> tuple[InboundMessage, int]:
    """One whole turn: the question stored, the answer stored; (question, answer's row id)."""
    msg = _msg(text)
    inbound = await store.rows.store_inbound(msg, [], store.settings)
    out = await store.rows.store_outbound(
        inbound.conversation_id, msg, Answer(answer, backend="vllm", outcome=MODEL)
    )
    return msg, out.message_id


async def test_a_first_message_makes_its_conversation_and_memory(store: Store) -> None:
    msg = _msg("你好", is_group=True)
    got = await store.rows.store_inbound(msg, [], store.settings)

    assert got.conversation_id > 0
    assert got.state == "bot"
    assert got.recalled.history == []
    with store.session() as s:
        conv = s.exec(select(Conversation)).one()
        stored = s.exec(select(Message)).one()
        mem = s.exec(select(ConversationMemory)).one()
    assert (conv.id, conv.platform, conv.app, conv.external_id, conv.is_group) == (
        got.conversation_id,
        "wecom",
        "app",
        "conv-1",
        True,
    )
    assert (stored.direction, stored.platform_msg_id, stored.sender_id, stored.text) == (
        "in",
        msg.event_id,
        "user-1",
        "你好",
    )
    assert got.stored == [memory.Said(stored.id, "in", "你好")]
    assert (mem.conversation_id, mem.session_start_id, mem.summary) == (got.conversation_id, 0, "")


async def test_the_next_message_recalls_the_session_so_far(store: Store) -> None:
    await _turn(store, "订单什么时候发货？", "一般48小时内发货。")
    await _turn(store, "能开发票吗？", "可以，在订单页申请。")

    got = await store.rows.store_inbound(_msg("好的谢谢"), [], store.settings)

    assert got.recalled.history == [
        Turn("user", "订单什么时候发货？"),
        Turn("assistant", "一般48小时内发货。"),
        Turn("user", "能开发票吗？"),
        Turn("assistant", "可以，在订单页申请。"),
    ]
    assert [r.direction for r in got.recalled.rows] == ["in", "out", "in", "out"]
    assert store.count(Conversation) == 1


async def test_a_redelivered_turn_writes_nothing_twice_and_reads_the_same(store: Store) -> None:
    await _turn(store, "第一个问题", "第一个回答")
    msg = _msg("第二个问题")
    answer = Answer("第二个回答", backend="vllm", prompt_tokens=120, completion_tokens=30)
    tokens = metrics.LLM_TOKENS.labels("vllm", "prompt")
    before = tokens._value.get()

    first = await store.rows.store_inbound(msg, [], store.settings)
    first_out = await store.rows.store_outbound(first.conversation_id, msg, answer)
    again = await store.rows.store_inbound(msg, [], store.settings)
    again_out = await store.rows.store_outbound(again.conversation_id, msg, answer)

    assert again == first
    assert again_out == first_out
    assert first_out.said == [memory.Said(first_out.message_id, "out", "第二个回答")]
    assert [t.text for t in first.recalled.history] == ["第一个问题", "第一个回答"]
    assert store.count(Message) == 4
    assert store.count(TurnRecord) == 2
    with store.session() as s:
        used = s.exec(select(TokenUsage)).one()
    assert (used.message_id, used.prompt_tokens, used.completion_tokens) == (
        first_out.message_id,
        120,
        30,
    )
    assert tokens._value.get() - before == 120  # counted once


async def test_a_burst_is_stored_in_its_order_after_the_answered_message(store: Store) -> None:
    await _turn(store, "在吗", "在的，请讲。")
    msg, extra_1, extra_2 = _msg("我想退货"), _msg("订单号 123"), _msg("衣服尺码不对")

    got = await store.rows.store_inbound(msg, [extra_1, extra_2], store.settings)

    assert [s.text for s in got.stored] == ["我想退货", "订单号 123", "衣服尺码不对"]
    ids = [s.id for s in got.stored]
    assert ids == sorted(ids)
    # The answered message is the first: the burst is not part of its history.
    assert [t.text for t in got.recalled.history] == ["在吗", "在的，请讲。"]
    with store.session() as s:
        found = s.exec(select(Message).where(Message.direction == "in")).all()
    assert {m.platform_msg_id: m.id for m in found}[extra_2.event_id] == ids[2]


async def test_a_reset_command_starts_the_session_after_itself(store: Store) -> None:
    await _turn(store, "查一下物流", "已发货。")
    reset = _msg("重新开始")

    got = await store.rows.store_inbound(reset, [], store.settings)
    again = await store.rows.store_inbound(reset, [], store.settings)  # a redelivery
    next_turn = await store.rows.store_inbound(_msg("新问题"), [], store.settings)

    assert got.recalled.history == again.recalled.history == []
    reset_id = got.stored[0].id
    with store.session() as s:
        mem = s.exec(select(ConversationMemory)).one()
    assert mem.session_start_id == reset_id + 1
    assert next_turn.recalled.history == []


async def test_an_idle_gap_starts_a_new_session_at_the_message(store: Store) -> None:
    await _turn(store, "上午的问题", "上午的回答")
    with store.session() as s:  # both rows two hours old
        s.exec(update(Message).values(created_at=datetime.now(UTC) - timedelta(hours=2)))  # type: ignore[call-overload]
        s.commit()

    got = await store.rows.store_inbound(_msg("下午的新问题"), [], store.settings)
    follow_up = await store.rows.store_inbound(_msg("补充一句"), [], store.settings)

    assert got.recalled.history == []
    with store.session() as s:
        mem = s.exec(select(ConversationMemory)).one()
    assert mem.session_start_id == got.stored[0].id
    assert [t.text for t in follow_up.recalled.history] == ["下午的新问题"]


async def test_what_memory_does_not_show_is_still_stored(store: Store) -> None:
    voice = _msg("我要退款", content=Content.VOICE)
    event = _msg("", kind=MessageKind.EVENT, event="enter_agent")

    heard = await store.rows.store_inbound(voice, [], store.settings)
    entered = await store.rows.store_inbound(event, [], store.settings)
    notice = await store.rows.store_outbound(
        entered.conversation_id, event, Answer("请稍后再试", backend="ratelimit")
    )

    assert heard.stored[0].text == VOICE_MARK + "我要退款"  # the person taking over sees it
    assert entered.stored == []  # an event is not a turn of the conversation
    assert notice.said == []  # nor is a rate-limit notice
    assert store.count(Message) == 3


async def test_a_delivery_is_one_row_that_a_retry_updates(store: Store) -> None:
    _, answer_id = await _turn(store, "你好", "您好！")

    await store.rows.record_delivery(answer_id, 0, status="failed", error="errcode 45009")
    await store.rows.record_delivery(answer_id, 0, status="sent", platform_msg_id="msg-9")
    await store.rows.record_delivery(answer_id, 1, status="sent")

    with store.session() as s:
        found = s.exec(select(Delivery).order_by(Delivery.part)).all()  # type: ignore[arg-type]
        record = s.exec(select(TurnRecord)).one()
        conv = s.exec(select(Conversation)).one()
    assert [(d.part, d.status, d.platform_msg_id, d.error, d.attempts) for d in found] == [
        (0, "sent", "msg-9", "", 2),
        (1, "sent", "", "", 1),
    ]
    assert (record.message_id, record.outcome, record.backend) == (answer_id, "model", "vllm")
    assert conv.updated_at > conv.created_at  # the answer marked it active


async def test_an_unreachable_database_is_worth_another_try() -> None:
    rows = PgRows(pg.Pool("postgresql://postgres@127.0.0.1:9/none"))  # nothing listens there
    with pytest.raises(TransientError, match="database unavailable"):
        await rows.store_inbound(_msg("你好"), [], Settings.load(None))
    await rows.close()


async def test_the_repeat_check_reads_the_customer_since_the_last_handoff(store: Store) -> None:
    for text in ("人工", "人工"):
        await store.rows.store_inbound(_msg(text), [], store.settings)
    with store.session() as s:  # an agent handed the conversation back to the bot
        conv_id = s.exec(select(Conversation)).one().id or 0
        s.add(
            HandoffEvent(
                conversation_id=conv_id, from_state="human", to_state="bot", trigger="release"
            )
        )
        s.commit()
    assert await store.rows.recent_customer_texts(conv_id, 3) == []

    await _turn(store, "转人工", "好的")
    await store.rows.store_inbound(
        _msg("", kind=MessageKind.EVENT, event="enter_agent"), [], store.settings
    )
    await _turn(store, "我要人工", "正在为您转接")
    await store.rows.store_inbound(_msg("人工客服"), [], store.settings)

    assert await store.rows.recent_customer_texts(conv_id, 3) == ["转人工", "我要人工", "人工客服"]
    assert await store.rows.recent_customer_texts(conv_id, 2) == ["我要人工", "人工客服"]


async def test_the_customer_binding_reads_as_the_binding_store_has_it(store: Store) -> None:
    bindings = BindingStore(store.db.engine)
    bindings.bind("wecom", "app", "user-1", "C-1001", BindingSource.PROOF)
    read = store.rows.customer_reader()
    if read is None:  # the database threads: the agent's BindingStore reads it itself
        assert isinstance(store.rows, ThreadedRows)
        return
    assert await read("wecom", "app", "user-1") == "C-1001"
    assert await read("wecom", "app", "user-2") is None  # another user: not bound
    assert await read("wecom", "other-app", "user-1") is None  # the same id in another app
    bindings.bind("wecom", "app", "user-1", "C-2002")  # rebound by an admin: seen at once
    assert await read("wecom", "app", "user-1") == "C-2002"


@pytest.mark.parametrize("way", ["postgresql-threads", "postgresql-asyncpg"])
async def test_a_server_in_another_time_zone_still_stores_utc(
    way: str, request: pytest.FixtureRequest, tmp_path
) -> None:
    # initdb takes the host's zone: a server set up in China works in Asia/Shanghai.
    url = postgresql_database(request)
    admin = psycopg.connect(url, autocommit=True)
    name = url.rsplit("/", 1)[1]
    admin.execute(f"ALTER DATABASE \"{name}\" SET timezone TO 'Asia/Shanghai'")
    admin.close()
    db = Database(url, threads=2)
    rows = _rows(way, url, db)
    settings = Settings.load(None, core={"data_dir": tmp_path, "session_idle_s": 1800})
    try:
        before = datetime.now(UTC)
        msg = _msg("几点发货？")
        inbound = await rows.store_inbound(msg, [], settings)
        await rows.store_outbound(
            inbound.conversation_id, msg, Answer("今天下午。", backend="vllm", outcome=MODEL)
        )
        after = datetime.now(UTC)
        with Session(db.engine) as s:
            stored = [aware(m.created_at) for m in s.exec(select(Message)).all()]
            stored.append(aware(s.exec(select(Conversation)).one().updated_at))
            stored += [aware(t.created_at) for t in s.exec(select(TurnRecord)).all()]
        assert len(stored) == 4
        for at in stored:  # not eight hours off
            assert before - timedelta(seconds=1) <= at <= after + timedelta(seconds=1), at
        # A new message minutes later is the same session, not a gap of hours.
        again = await rows.store_inbound(_msg("好的"), [], settings)
        assert [t.text for t in again.recalled.history] == ["几点发货？", "今天下午。"]
    finally:
        await rows.close()
        db.close()
