"""What the handoff desk reads and writes (desk.py, the admin API, the console), in a thread."""

from __future__ import annotations

import html
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.db import records as db
from bot.db.models import Conversation, HandoffEvent, Message
from bot.handoff import state

MAX_MESSAGES = 500


def get(engine: Engine, conv_id: int) -> Conversation | None:
    with Session(engine) as session:
        return session.get(Conversation, conv_id)


def last_sender(engine: Engine, conv_id: int) -> str:
    with Session(engine) as session:
        return (
            session.exec(
                select(Message.sender_id)
                .where(Message.conversation_id == conv_id, Message.direction == "in")
                .order_by(col(Message.id).desc())
                .limit(1)
            ).first()
            or ""
        )


def record_reply(
    engine: Engine, conv: Conversation, text: str, agent: str, backend: str = state.HUMAN_BACKEND
) -> Message:
    with Session(engine) as session:
        row = Message(
            conversation_id=conv.id or 0,
            direction="out",
            platform_msg_id=f"human:{uuid.uuid4().hex}",
            sender_id=agent,
            text=text,
            backend=backend,
        )
        session.add(row)
        session.commit()
        session.refresh(row)
        return row


def delivery(
    engine: Engine, row: Message, part: int, status: str, platform_msg_id: str, error: str
) -> None:
    with Session(engine) as session:
        db.record_delivery(
            session, row.id or 0, part, status=status, platform_msg_id=platform_msg_id, error=error
        )


def held(engine: Engine, since: datetime | None, trigger: str) -> list[dict[str, Any]]:
    with Session(engine) as session:
        convs = list(session.exec(select(Conversation).where(Conversation.state == state.HUMAN)))
        found = []
        for conv in convs:
            event = session.exec(
                select(HandoffEvent)
                .where(HandoffEvent.conversation_id == conv.id, HandoffEvent.to_state == "human")
                .order_by(col(HandoffEvent.id).desc())
                .limit(1)
            ).first()
            if event is None:
                continue
            at = state.aware(event.created_at)
            if (since is not None and at < state.aware(since)) or (
                trigger and event.trigger != trigger
            ):
                continue
            found.append(
                {
                    **conv_json(conv),
                    "trigger": event.trigger,
                    "reason": event.reason,
                    "actor": event.actor,
                    "since": at.isoformat(),
                }
            )
    found.sort(key=lambda r: r["since"], reverse=True)
    return found


def conversation(engine: Engine, conv_id: int) -> dict[str, Any] | None:
    with Session(engine) as session:
        conv = session.get(Conversation, conv_id)
        if conv is None:
            return None
        messages = state.last_messages(session, conv_id, MAX_MESSAGES)
        events = list(
            session.exec(
                select(HandoffEvent)
                .where(HandoffEvent.conversation_id == conv_id)
                .order_by(col(HandoffEvent.id))
            )
        )
        return {
            **conv_json(conv),
            "messages": [
                {
                    "id": m.id,
                    "direction": m.direction,
                    "sender_id": m.sender_id,
                    "kind": m.kind,
                    "text": m.text,
                    "backend": m.backend,
                    "created_at": state.aware(m.created_at).isoformat(),
                }
                for m in messages
            ],
            "events": [
                {
                    "from": e.from_state,
                    "to": e.to_state,
                    "trigger": e.trigger,
                    "reason": e.reason,
                    "actor": e.actor,
                    "created_at": state.aware(e.created_at).isoformat(),
                }
                for e in events
            ],
        }


def conv_json(conv: Conversation) -> dict[str, Any]:
    return {
        "id": conv.id,
        "platform": conv.platform,
        "app": conv.app,
        "external_id": conv.external_id,
        "is_group": conv.is_group,
        "state": conv.state,
        "updated_at": state.aware(conv.updated_at).isoformat(),
    }


def page(found: dict[str, Any]) -> str:
    who = {"in": "客户", "out": "客服"}
    rows = []
    for m in found["messages"]:
        label = who.get(m["direction"], m["direction"])
        if m["backend"] == state.HUMAN_BACKEND:
            label = f"人工（{m['sender_id']}）"
        rows.append(
            f"<p><b>{html.escape(label)}</b> <small>{html.escape(m['created_at'])}</small><br>"
            f"{html.escape(m['text'])}</p>"
        )
    events = "".join(
        f"<li>{html.escape(e['created_at'])}：{e['from']} → {e['to']}（{html.escape(e['trigger'])}"
        f" {html.escape(e['reason'])}，{html.escape(e['actor'])}）</li>"
        for e in found["events"]
    )
    title = f"对话 {found['id']}（{found['platform']} · {html.escape(found['external_id'])}）"
    return (
        '<!doctype html><html lang="zh-CN"><meta charset="utf-8">'
        f"<title>{title}</title><body><h1>{title}</h1><p>当前状态：{found['state']}</p>"
        f"<ul>{events}</ul>{''.join(rows)}</body></html>"
    )
