"""The handoff state machine's storage: conversation state, its events, transcript links.

`transition` is the only writer of `Conversation.state`: one conditional
``UPDATE … SET state=:to WHERE id=:id AND state=:from`` plus a `HandoffEvent` row in the same
transaction, so two workers, or a worker and the admin API, cannot both move a conversation
(the loser sees 0 rows and does nothing). Works the same on SQLite and PostgreSQL.

    bot → human   user_request | model | low_confidence | repeat | anger | admin
    human → bot   release_admin | release_command | idle_timeout

Everything here is synchronous: the worker calls it on its task's own event loop (as
bot/pipeline/turn.py does), the admin API in a thread.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.db.models import Conversation, HandoffClaim, HandoffEvent, Message, aware
from bot.domain import MessageKind
from bot.settings import Settings

log = logging.getLogger(__name__)

_EXPIRES = re.compile(r"[0-9]{1,16}")

BOT, HUMAN = "bot", "human"
TO_HUMAN = ("user_request", "model", "low_confidence", "repeat", "anger", "admin")
TO_BOT = ("release_admin", "release_command", "idle_timeout")
SUMMARY_TURNS = 6
HUMAN_BACKEND = "human"  # Message.backend of a human agent's reply


# --- the state machine -------------------------------------------------------------------


def transition(
    engine: Engine,
    conversation_id: int,
    to_state: str,
    trigger: str,
    *,
    reason: str = "",
    actor: str = "bot",
) -> bool:
    """Move the conversation to `to_state` if it is in the other state; True when moved."""
    allowed = TO_HUMAN if to_state == HUMAN else TO_BOT
    if to_state not in (BOT, HUMAN) or trigger not in allowed:
        raise ValueError(f"no transition to {to_state!r} on {trigger!r}")
    from_state = BOT if to_state == HUMAN else HUMAN
    now = datetime.now(UTC)
    with Session(engine) as session:
        moved = session.exec(  # type: ignore[call-overload]
            update(Conversation)
            .where(col(Conversation.id) == conversation_id, col(Conversation.state) == from_state)
            .values(state=to_state, updated_at=now)
        ).rowcount
        if moved != 1:
            session.rollback()
            return False
        if to_state == BOT:  # whoever had claimed it no longer answers it
            session.exec(  # type: ignore[call-overload]
                delete(HandoffClaim).where(col(HandoffClaim.conversation_id) == conversation_id)
            )
        session.add(
            HandoffEvent(
                conversation_id=conversation_id,
                from_state=from_state,
                to_state=to_state,
                trigger=trigger,
                reason=reason[:500],
                actor=actor[:128],
                created_at=now,
            )
        )
        session.commit()
    log.info(
        "conversation %d: %s → %s (%s by %s)", conversation_id, from_state, to_state, trigger, actor
    )
    return True


def state_of(engine: Engine, conversation_id: int) -> str:
    with Session(engine) as session:
        conv = session.get(Conversation, conversation_id)
        return conv.state if conv is not None else BOT


def last_human_activity(engine: Engine, conversation_id: int) -> datetime | None:
    """The latest of: the move to `human`, a human agent's reply."""
    with Session(engine) as session:
        moved = session.exec(
            select(HandoffEvent.created_at)
            .where(HandoffEvent.conversation_id == conversation_id, HandoffEvent.to_state == HUMAN)
            .order_by(col(HandoffEvent.id).desc())
            .limit(1)
        ).first()
        replied = session.exec(
            select(Message.created_at)
            .where(
                Message.conversation_id == conversation_id,
                Message.direction == "out",
                Message.backend == HUMAN_BACKEND,
            )
            .order_by(col(Message.id).desc())
            .limit(1)
        ).first()
    times = [aware(t) for t in (moved, replied) if t is not None]
    return max(times) if times else None


def recent_customer_texts(session: Session, conversation_id: int, limit: int) -> list[str]:
    """The last `limit` customer texts since the conversation last returned to the bot.

    One statement (the last handoff event's time as a subquery): asked after every answer.
    """
    params = {"conversation_id": conversation_id, "limit": limit}
    rows = list(session.connection().execute(_recent_texts_query(), params).scalars())
    rows.reverse()
    return rows


@functools.cache
def _recent_texts_query() -> Any:
    # Built once with bound parameters: building the statement and its cache key on every
    # call cost more CPU than running it (py-spy, issue 13).
    message = Message.__table__.c  # type: ignore[attr-defined]
    event = HandoffEvent.__table__.c  # type: ignore[attr-defined]
    conversation_id: Any = bindparam("conversation_id")
    since = (
        sa_select(event.created_at)
        .where(event.conversation_id == conversation_id)
        .order_by(event.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        sa_select(message.text)
        .where(
            message.conversation_id == conversation_id,
            message.direction == "in",
            message.kind == MessageKind.TEXT.value,
            or_(since.is_(None), message.created_at > since),
        )
        .order_by(message.id.desc())
        .limit(bindparam("limit"))
    )


def last_messages(session: Session, conversation_id: int, limit: int) -> list[Message]:
    """The conversation's last `limit` messages, oldest first."""
    rows = list(
        session.exec(
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(col(Message.id).desc())
            .limit(limit)
        )
    )
    rows.reverse()
    return rows


def summary_lines(engine: Engine, conversation_id: int, turns: int = SUMMARY_TURNS) -> list[str]:
    with Session(engine) as session:
        rows = last_messages(session, conversation_id, turns)
    who = {"in": "客户", "out": "客服"}
    return [f"> {who.get(r.direction, r.direction)}：{clip(r.text, 80)}" for r in rows]


def clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- transcript links --------------------------------------------------------------------


def _link_key(settings: Settings) -> bytes:
    # Derived from the admin token: rotating the token revokes every link given out.
    token = settings.core.admin_token.get_secret_value().encode()
    return hmac.new(token, b"handoff-transcript-link", hashlib.sha256).digest()


def link_signature(settings: Settings, conversation_id: int, expires: int) -> str:
    msg = f"{conversation_id}:{expires}".encode()
    return hmac.new(_link_key(settings), msg, hashlib.sha256).hexdigest()


def transcript_link(settings: Settings, conversation_id: int, *, now: float) -> str:
    """A link agents can open without the admin token, valid HANDOFF_LINK_TTL_S."""
    base = (settings.handoff.public_url or f"http://127.0.0.1:{settings.core.port}").rstrip("/")
    path = f"{base}/api/conversations/{conversation_id}/transcript"
    if not settings.core.admin_token.get_secret_value():
        return path  # no token, no admin API: the link says where, it cannot open
    expires = int(now + settings.handoff.link_ttl_s)
    return f"{path}?exp={expires}&sig={link_signature(settings, conversation_id, expires)}"


def link_valid(settings: Settings, conversation_id: int, exp: str, sig: str, *, now: float) -> bool:
    """Whether `exp` and `sig` from a link's query open this conversation now.

    Both are whatever the URL holds: `exp` must be ASCII digits of a sane length
    (str.isdigit() also takes "²", which int() refuses, and int() refuses 5,000 digits), and
    `sig` is compared as bytes (compare_digest refuses non-ASCII str).
    """
    if not settings.core.admin_token.get_secret_value() or not _EXPIRES.fullmatch(exp):
        return False
    if int(exp) < now:
        return False
    expected = link_signature(settings, conversation_id, int(exp)).encode()
    return hmac.compare_digest(sig.encode("utf-8", "surrogateescape"), expected)
