"""Storage on both databases: SQLite (embedded default) and PostgreSQL (production)."""

from collections.abc import Iterator

import pytest
from sqlmodel import Session, select

from bot.db import records as db
from bot.db.engine import get_engine
from bot.db.models import Delivery, Message
from bot.domain import InboundMessage, Platform


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/bot.db"
    else:
        yield request.getfixturevalue("pg_url")


def _msg(event_id: str, text: str = "怎么退货") -> InboundMessage:
    return InboundMessage(Platform.WECOM, "default", event_id, "zhangsan", "zhangsan", text)


def test_turns_are_stored_once_and_read_back_in_order(database_url: str) -> None:
    engine = get_engine(database_url)
    with Session(engine) as s:
        first = _msg(f"m1-{database_url[-6:]}")
        conv = db.ensure_conversation(s, first)
        inbound = db.record_inbound(s, conv, first)
        again = db.record_inbound(s, conv, first)  # a redelivery finds the same row
        assert again.id == inbound.id
        out = db.record_outbound(s, conv, first, "七天无理由退货", backend="vllm", degraded=False)
        db.record_delivery(s, out.id or 0, 0, status="failed", error="status=502")
        db.record_delivery(s, out.id or 0, 0, status="sent", platform_msg_id="msg-1")
        second = _msg(f"m2-{database_url[-6:]}", "运费谁出")
        later = db.record_inbound(s, conv, second)
        stored = s.exec(
            select(Message)
            .where(Message.conversation_id == conv.id, Message.id < later.id)  # type: ignore[operator]
            .order_by(Message.id)  # type: ignore[arg-type]
        ).all()
        assert [(m.direction, m.text) for m in stored] == [
            ("in", "怎么退货"),
            ("out", "七天无理由退货"),
        ]
        delivery = s.exec(select(Delivery).where(Delivery.message_id == out.id)).one()
        assert (delivery.status, delivery.attempts) == ("sent", 2)
        assert delivery.platform_msg_id == "msg-1"
        assert len(s.exec(select(Message).where(Message.conversation_id == conv.id)).all()) == 3


def test_conversations_are_found_again(database_url: str) -> None:
    engine = get_engine(database_url)
    with Session(engine) as s:
        a = db.ensure_conversation(s, _msg("x1"))
        b = db.ensure_conversation(s, _msg("x2"))
        assert a.id == b.id
