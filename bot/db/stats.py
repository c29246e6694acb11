"""The dashboard's figures over the last days: volumes per day and channel, answer kinds,
time to answer, how long customers waited for a person, and model calls and tokens.

Counting is done by the database; percentiles and handoff waits are computed here over
the period's rows (bounded by `MAX_ROWS`, newest first, so a busy year cannot exhaust
the web process).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from bot.db.models import (
    Conversation,
    Delivery,
    HandoffEvent,
    Message,
    TokenUsage,
    TurnRecord,
    aware,
)

MAX_ROWS = 200_000
HUMAN = "human"


@dataclass
class Dashboard:
    """Everything the dashboard shows, ready to chart."""

    days: list[str]  # the period's dates, oldest first (server-local)
    per_day: dict[str, list[int]]  # channel → customer messages per day
    outcomes: dict[str, int]  # answer kind → answers
    answer_ms: dict[str, int]  # p50 / p95 time to answer
    handoffs: int = 0
    handoff_wait_s: dict[str, int] = field(default_factory=dict)  # p50 / p95 / waiting now
    models: list[dict[str, Any]] = field(default_factory=list)  # per backend: calls, tokens
    answers: int = 0
    ratings: dict[str, int] = field(default_factory=dict)  # up / down


def dashboard(session: Session, days: int, *, now: datetime | None = None) -> Dashboard:
    now = now or datetime.now(UTC)
    local_today = now.astimezone().date()
    first = local_today - timedelta(days=days - 1)
    # Local midnight, in UTC as stored (SQLite compares the text of naive UTC times).
    since = datetime.combine(first, datetime.min.time()).astimezone().astimezone(UTC)
    dates = [first + timedelta(days=i) for i in range(days)]
    latencies = _latencies(session, since)
    outcomes = _outcomes(session, since)
    waits, waiting = _handoff_waits(session, since, now)
    return Dashboard(
        days=[d.isoformat() for d in dates],
        per_day=_per_day(session, since, dates),
        outcomes=outcomes,
        answer_ms={"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95)},
        handoffs=len(waits) + waiting,
        handoff_wait_s={
            "p50": _percentile(waits, 50),
            "p95": _percentile(waits, 95),
            "waiting": waiting,
        },
        models=_models(session, since),
        answers=sum(outcomes.values()),
        ratings=_ratings(session, since),
    )


def _per_day(session: Session, since: datetime, dates: list[date]) -> dict[str, list[int]]:
    """Customer messages per channel and local day (days are cut in Python: portable SQL)."""
    rows = session.execute(
        select(col(Message.created_at), col(Conversation.platform))
        .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
        .where(col(Message.direction) == "in", col(Message.created_at) >= since)
        .order_by(col(Message.created_at).desc())
        .limit(MAX_ROWS)
    ).all()
    index = {d: i for i, d in enumerate(dates)}
    counts: dict[str, list[int]] = {}
    for created, platform in rows:
        day = aware(created).astimezone().date()
        if day in index:
            counts.setdefault(platform, [0] * len(dates))[index[day]] += 1
    return dict(sorted(counts.items()))


def _outcomes(session: Session, since: datetime) -> dict[str, int]:
    rows = session.execute(
        select(col(TurnRecord.outcome), func.count())
        .where(col(TurnRecord.created_at) >= since)
        .group_by(col(TurnRecord.outcome))
    ).all()
    return {outcome: int(n) for outcome, n in sorted(rows)}


def _ratings(session: Session, since: datetime) -> dict[str, int]:
    rows = session.execute(
        select(col(TurnRecord.rating), func.count())
        .where(col(TurnRecord.created_at) >= since, col(TurnRecord.rating) != 0)
        .group_by(col(TurnRecord.rating))
    ).all()
    counts = {int(r): int(n) for r, n in rows}
    return {"up": counts.get(1, 0), "down": counts.get(-1, 0)}


def _latencies(session: Session, since: datetime) -> list[int]:
    rows = session.execute(
        select(col(TurnRecord.latency_ms))
        .where(col(TurnRecord.created_at) >= since, col(TurnRecord.outcome) != "handoff")
        .order_by(col(TurnRecord.created_at).desc())
        .limit(MAX_ROWS)
    ).all()
    return [int(ms) for (ms,) in rows]


def _handoff_waits(session: Session, since: datetime, now: datetime) -> tuple[list[int], int]:
    """Seconds from each handoff to a person's first reply, and how many still wait."""
    handoffs = session.execute(
        select(col(HandoffEvent.conversation_id), col(HandoffEvent.created_at))
        .where(col(HandoffEvent.to_state) == HUMAN, col(HandoffEvent.created_at) >= since)
        .order_by(col(HandoffEvent.created_at))
        .limit(MAX_ROWS)
    ).all()
    if not handoffs:
        return [], 0
    ids = list({conv_id for conv_id, _ in handoffs})
    replies: dict[int, list[datetime]] = {}
    for conv_id, created in session.execute(
        select(col(Message.conversation_id), col(Message.created_at))
        .where(
            col(Message.conversation_id).in_(ids),
            col(Message.backend) == HUMAN,
            col(Message.created_at) >= since,
        )
        .order_by(col(Message.created_at))
    ).all():
        replies.setdefault(conv_id, []).append(aware(created))
    waits: list[int] = []
    waiting = 0
    for conv_id, created in handoffs:
        start = aware(created)
        first = next((r for r in replies.get(conv_id, []) if r >= start), None)
        if first is not None:
            waits.append(int((first - start).total_seconds()))
        elif (now - start) < timedelta(days=1):
            waiting += 1  # not answered yet (older ones were released without a reply)
    return waits, waiting


def _models(session: Session, since: datetime) -> list[dict[str, Any]]:
    rows = session.execute(
        select(
            col(TokenUsage.backend),
            func.count(),
            func.sum(col(TokenUsage.prompt_tokens)),
            func.sum(col(TokenUsage.completion_tokens)),
        )
        .where(col(TokenUsage.created_at) >= since)
        .group_by(col(TokenUsage.backend))
    ).all()
    return [
        {
            "backend": backend or "unknown",
            "calls": int(n),
            "prompt_tokens": int(p or 0),
            "completion_tokens": int(c or 0),
        }
        for backend, n, p, c in sorted(rows, key=lambda r: -int(r[1]))
    ]


def _percentile(values: list[int], pct: int) -> int:
    """The nearest-rank percentile (0 for no values)."""
    if not values:
        return 0
    ordered = sorted(values)
    rank = max(1, -(-pct * len(ordered) // 100))  # ceil(pct/100 · n)
    return ordered[rank - 1]


@dataclass(frozen=True)
class Activity:
    """A channel's last customer message and its last failed delivery."""

    last_in: datetime | None = None
    last_error: str = ""
    last_error_at: datetime | None = None


def channel_activity(session: Session) -> dict[tuple[str, str], Activity]:
    """(platform, app) → when a customer last wrote, and the latest failed send."""
    last_in = session.execute(
        select(col(Conversation.platform), col(Conversation.app), func.max(Message.created_at))
        .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
        .where(col(Message.direction) == "in")
        .group_by(col(Conversation.platform), col(Conversation.app))
    ).all()
    found = {(p, a): Activity(last_in=aware(at)) for p, a, at in last_in if at is not None}
    failures = session.execute(
        select(
            col(Conversation.platform),
            col(Conversation.app),
            col(Delivery.error),
            col(Delivery.created_at),
        )
        .join(Message, col(Message.id) == col(Delivery.message_id))
        .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
        .where(col(Delivery.status) == "failed")
        .order_by(col(Delivery.created_at).desc())
        .limit(500)
    ).all()
    for platform, app, error, at in failures:
        key = (platform, app)
        current = found.get(key, Activity())
        if current.last_error_at is None:
            found[key] = Activity(current.last_in, error, aware(at))
    return found
