"""Who answers a conversation the humans hold, and the queue of those nobody answers yet.

The queue is every conversation in state `human` that nobody has claimed and no person has
answered since it was handed over (the admin API replies without claiming), in the order
it was handed over: the customer's place in it is what they are told
(bot/handoff/waiting.py), and the inbox counts its long waits.
Synchronous, like bot/handoff/state.py: callers run it in a thread.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import exists, func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.db import records
from bot.db.models import Conversation, HandoffClaim, HandoffEvent, Message, aware
from bot.handoff.state import HUMAN, HUMAN_BACKEND

log = logging.getLogger(__name__)


def assign(engine: Engine, conv_id: int, agent: str) -> bool:
    """Claim a free conversation for `agent`; False when someone has it already."""
    with Session(engine) as session:
        return records.insert_once(session, HandoffClaim(conversation_id=conv_id, agent=agent))


def holder(engine: Engine, conv_id: int) -> str:
    """Who has claimed the conversation ("" for nobody)."""
    with Session(engine) as session:
        found = session.get(HandoffClaim, conv_id)
        return found.agent if found is not None else ""


def transfer(engine: Engine, conv_id: int, holder: str, to: str) -> bool:
    """Move the claim from `holder` ("" for none) to `to`; False when it is no longer
    `holder`'s (someone claimed or moved it meanwhile: the caller says who has it)."""
    if not holder:
        return assign(engine, conv_id, to)
    with Session(engine) as session:
        moved = session.exec(  # type: ignore[call-overload]
            update(HandoffClaim)
            .where(col(HandoffClaim.conversation_id) == conv_id, col(HandoffClaim.agent) == holder)
            .values(agent=to, claimed_at=datetime.now(UTC))
        ).rowcount
        session.commit()
    if moved == 1:
        log.info("conversation %d passed from %s to %s", conv_id, holder, to)
    return bool(moved == 1)


def queue(engine: Engine) -> list[int]:
    """The unclaimed conversations waiting for a person, first handed over first."""
    return [conv_id for conv_id, _since in queue_since(engine)]


def late(engine: Engine, alert_s: float, *, now: datetime | None = None) -> int:
    """How many of the queue have waited longer than `alert_s` (the console's wait alert)."""
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=alert_s)
    return sum(1 for _conv_id, since in queue_since(engine) if aware(since) < cutoff)


def queue_since(engine: Engine) -> list[tuple[int, datetime]]:
    """The queue with when each conversation was handed over, first handed over first."""
    latest = (
        select(
            col(HandoffEvent.conversation_id).label("conv_id"),
            func.max(HandoffEvent.id).label("event_id"),
        )
        .where(HandoffEvent.to_state == HUMAN)
        .group_by(col(HandoffEvent.conversation_id))
        .subquery()
    )
    answered = exists().where(
        col(Message.conversation_id) == Conversation.id,
        col(Message.backend) == HUMAN_BACKEND,
        col(Message.created_at) >= HandoffEvent.created_at,
    )
    query = (
        select(Conversation.id, HandoffEvent.created_at)
        .join(latest, latest.c.conv_id == Conversation.id)
        .join(HandoffEvent, col(HandoffEvent.id) == latest.c.event_id)
        .outerjoin(HandoffClaim, col(HandoffClaim.conversation_id) == Conversation.id)
        .where(
            Conversation.state == HUMAN,
            col(HandoffClaim.conversation_id).is_(None),
            ~answered,
        )
        .order_by(latest.c.event_id)
    )
    with Session(engine) as session:
        return [(conv_id, since) for conv_id, since in session.exec(query) if conv_id is not None]


def position(engine: Engine, conv_id: int) -> int:
    """The conversation's place in the queue, from 1; 0 when it is not waiting in it."""
    waiting = queue(engine)
    return waiting.index(conv_id) + 1 if conv_id in waiting else 0
