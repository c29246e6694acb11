"""Turn records: what the bot did for each answer, stored beside the answer, read by the console.

`record` writes one row per outbound message (a redelivered task finds it and writes
nothing). `for_conversation` gives the console's transcript its per-answer details;
`conversations` lists conversations by channel, app, date and outcome; `export_rows` is
the CSV export of the same selection.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from bot.db.models import Conversation, Message, TokenUsage, TurnRecord, aware
from bot.db.records import insert_new

EXPORT_MAX_ROWS = 100_000


def record(
    session: Session,
    *,
    message_id: int,
    conversation_id: int,
    outcome: str,
    backend: str,
    confidence: float | None,
    sent_at: datetime,
    trace: str,
    commit: bool = True,
) -> None:
    """Store what the bot did for answer `message_id` (`trace`: bot.agent.trace JSON), once
    (`commit` False: the caller commits it with the answer)."""
    insert_new(  # once: a redelivery finds it stored
        session,
        TurnRecord(
            message_id=message_id,
            conversation_id=conversation_id,
            outcome=outcome,
            backend=backend,
            confidence=confidence,
            latency_ms=latency_ms(sent_at),
            trace=trace,
        ),
        ("message_id",),
        commit=commit,
    )


def latency_ms(sent_at: datetime) -> int:
    """How long the customer of a message sent at `sent_at` has waited until now."""
    waited = (datetime.now(UTC) - aware(sent_at)).total_seconds()
    # A platform clock ahead of ours, or a message that waited days: keep it sane.
    return max(0, min(int(waited * 1000), 86_400_000))


def rate(session: Session, conversation_id: int, event_id: str, rating: int) -> bool:
    """Record the customer's rating of the answer to `event_id`; False when there is none."""
    reply = session.exec(
        select(Message.id).where(
            Message.conversation_id == conversation_id,
            Message.direction == "out",
            Message.platform_msg_id == f"reply:{event_id}",
        )
    ).first()
    record = (
        session.exec(select(TurnRecord).where(TurnRecord.message_id == reply)).first()
        if reply is not None
        else None
    )
    if record is None:
        return False
    record.rating = rating
    session.add(record)
    session.commit()
    return True


def rate_external(
    session: Session, platform: str, app: str, external_id: str, event_id: str, rating: int
) -> bool:
    """`rate` for the conversation a platform names by its own id; False when not found."""
    conv = session.exec(
        select(Conversation.id).where(
            Conversation.platform == platform,
            Conversation.app == app,
            Conversation.external_id == external_id,
        )
    ).first()
    return conv is not None and rate(session, conv, event_id, rating)


@dataclass(frozen=True)
class TurnView:
    """One answer's record as the console shows it."""

    outcome: str
    backend: str
    confidence: float | None
    latency_ms: int
    prompt_tokens: int
    completion_tokens: int
    trace: dict[str, Any]  # bot.agent.trace.Trace as a dict


def for_conversation(session: Session, conversation_id: int) -> dict[int, TurnView]:
    """The records of a conversation's answers, by outbound message id."""
    rows = session.exec(
        select(TurnRecord).where(TurnRecord.conversation_id == conversation_id)
    ).all()
    tokens = {
        u.message_id: u
        for u in session.exec(
            select(TokenUsage).where(
                TokenUsage.conversation_id == conversation_id, TokenUsage.purpose == "answer"
            )
        )
    }
    views: dict[int, TurnView] = {}
    for row in rows:
        used = tokens.get(row.message_id)
        views[row.message_id] = TurnView(
            outcome=row.outcome,
            backend=row.backend,
            confidence=row.confidence,
            latency_ms=row.latency_ms,
            prompt_tokens=used.prompt_tokens if used else 0,
            completion_tokens=used.completion_tokens if used else 0,
            trace=json.loads(row.trace) if row.trace else {},
        )
    return views


@dataclass(frozen=True)
class Filters:
    """The conversation list's filters; empty fields filter nothing."""

    platform: str = ""
    app: str = ""
    outcome: str = ""
    since: datetime | None = None  # updated at or after
    until: datetime | None = None  # updated before


def conversations(session: Session, filters: Filters, *, limit: int) -> list[Conversation]:
    """Conversations matching `filters`, most recently active first."""
    query = select(Conversation)
    if filters.platform:
        query = query.where(Conversation.platform == filters.platform)
    if filters.app:
        query = query.where(Conversation.app == filters.app)
    if filters.since is not None:
        query = query.where(col(Conversation.updated_at) >= filters.since)
    if filters.until is not None:
        query = query.where(col(Conversation.updated_at) < filters.until)
    if filters.outcome:
        having = select(TurnRecord.conversation_id).where(TurnRecord.outcome == filters.outcome)
        query = query.where(col(Conversation.id).in_(having))
    query = query.order_by(col(Conversation.updated_at).desc(), col(Conversation.id).desc())
    return list(session.exec(query.limit(limit)))


@dataclass(frozen=True)
class Unanswered:
    """A customer's question the bot declined or answered with little confidence."""

    text: str
    at: datetime
    conversation_id: int
    outcome: str
    confidence: float | None


def unanswered(session: Session, since: datetime, *, below: float, limit: int) -> list[Unanswered]:
    """Questions since `since` that were declined, or answered from knowledge scoring under
    `below`, newest first."""
    weak = col(TurnRecord.confidence) < below
    records = session.exec(
        select(TurnRecord)
        .where(col(TurnRecord.created_at) >= since)
        .where((col(TurnRecord.outcome) == "declined") | weak)
        .order_by(col(TurnRecord.created_at).desc())
        .limit(limit)
    ).all()
    if not records:
        return []
    replies = {
        m.id: m
        for m in session.exec(
            select(Message).where(col(Message.id).in_([r.message_id for r in records]))
        )
    }
    event_ids = {m.platform_msg_id.removeprefix("reply:") for m in replies.values()}
    asked = {
        (m.conversation_id, m.platform_msg_id): m.text
        for m in session.exec(
            select(Message).where(
                col(Message.direction) == "in",
                col(Message.conversation_id).in_({r.conversation_id for r in records}),
                col(Message.platform_msg_id).in_(event_ids),
            )
        )
    }
    found: list[Unanswered] = []
    for r in records:
        reply = replies.get(r.message_id)
        if reply is None:
            continue
        text = asked.get((r.conversation_id, reply.platform_msg_id.removeprefix("reply:")), "")
        if text.strip():
            found.append(
                Unanswered(
                    text.strip(), aware(r.created_at), r.conversation_id, r.outcome, r.confidence
                )
            )
    return found


EXPORT_COLUMNS = (
    "conversation_id",
    "platform",
    "app",
    "customer",
    "time",
    "direction",
    "text",
    "outcome",
    "backend",
    "confidence",
    "latency_ms",
)


def export_rows(session: Session, filters: Filters) -> Iterator[dict[str, Any]]:
    """Every message of the selected conversations, oldest first per conversation."""
    convs = conversations(session, filters, limit=EXPORT_MAX_ROWS)
    by_id = {c.id: c for c in convs}
    if not by_id:
        return
    records = {
        r.message_id: r
        for r in session.exec(
            select(TurnRecord).where(col(TurnRecord.conversation_id).in_(list(by_id)))
        )
    }
    messages = session.exec(
        select(Message)
        .where(col(Message.conversation_id).in_(list(by_id)))
        .order_by(col(Message.conversation_id), col(Message.created_at), col(Message.id))
        .limit(EXPORT_MAX_ROWS)
    )
    for m in messages:
        conv = by_id[m.conversation_id]
        rec = records.get(m.id or 0)
        yield {
            "conversation_id": m.conversation_id,
            "platform": conv.platform,
            "app": conv.app,
            "customer": conv.external_id,
            "time": aware(m.created_at).isoformat(timespec="seconds"),
            "direction": m.direction,
            "text": m.text,
            "outcome": rec.outcome if rec else "",
            "backend": m.backend,
            "confidence": "" if rec is None or rec.confidence is None else f"{rec.confidence:.3f}",
            "latency_ms": rec.latency_ms if rec else "",
        }
