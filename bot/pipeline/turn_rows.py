"""The rows a turn writes: the inbound message with its memory, the answer with its record,
each part's delivery. Two ways to the same rows:

- `ThreadedRows`: SQLAlchemy in the database threads (`bot.db.engine.Database`), for any
  database; SQLite, the embedded default, uses it;
- `bot.pipeline.turn_rows_pg.PgRows`: PostgreSQL through asyncpg on the loop, each step one
  statement (issue 13: about half of the worker's CPU per answer, benchmarks/README.md).

`for_database` picks one. Both are safe to repeat for a redelivered message: each row is
written once, keyed by the event id, and a repeat reads what the first try stored.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from sqlmodel import Session

from bot.agent import memory
from bot.agent import trace as tracing
from bot.agent.agent import Answer
from bot.db import pg, turns, usage
from bot.db import records as db
from bot.db.engine import Database
from bot.domain import InboundMessage
from bot.handoff import state as handoff_state
from bot.settings import Settings
from bot.tools.orders import CustomerOf


class Inbound(NamedTuple):
    """What storing the inbound message gave the turn."""

    conversation_id: int
    recalled: memory.Recalled  # the memory the answer may use
    stored: list[memory.Said]  # the stored messages, as memory reads them
    state: str  # the conversation's handoff state ("bot" or "human")


class Outbound(NamedTuple):
    """What storing the answer gave the turn."""

    message_id: int  # the answer's row
    said: list[memory.Said]  # the answer as memory reads it (empty: not remembered)


class TurnRows(Protocol):
    async def store_inbound(
        self, msg: InboundMessage, absorbed: list[InboundMessage], settings: Settings
    ) -> Inbound:
        """Store `msg` and the burst it absorbed; its conversation is created when new."""
        ...

    async def store_outbound(self, conv_id: int, msg: InboundMessage, answer: Answer) -> Outbound:
        """Store the answer to `msg` (once), its record and the tokens it cost."""
        ...

    async def record_delivery(
        self, message_id: int, part: int, *, status: str, platform_msg_id: str = "", error: str = ""
    ) -> None:
        """Record the outcome of delivering one part; a retry updates the same row."""
        ...

    async def recent_customer_texts(self, conversation_id: int, limit: int) -> list[str]:
        """The customer's last `limit` texts since the conversation last returned to the
        bot, oldest first (the handoff's repeat trigger)."""
        ...

    def customer_reader(self) -> CustomerOf | None:
        """Reads the customer id bound to (platform, app, user id), the order tools'
        identity; None: the agent reads it through its own BindingStore, in a thread."""
        ...

    async def close(self) -> None: ...


def for_database(url: str, db: Database, *, connections: int = pg.POOL_MAX) -> TurnRows:
    """asyncpg for PostgreSQL (at most `connections` of them), the database threads for
    any other database."""
    if pg.is_postgresql(url):
        from bot.pipeline.turn_rows_pg import PgRows  # here: it imports this module

        return PgRows(pg.Pool(url, max_size=connections))
    return ThreadedRows(db)


class ThreadedRows:
    """The turn's rows through SQLAlchemy, in `db`'s threads."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def store_inbound(
        self, msg: InboundMessage, absorbed: list[InboundMessage], settings: Settings
    ) -> Inbound:
        return await self._db.session(lambda s: _store_inbound(s, msg, absorbed, settings))

    async def store_outbound(self, conv_id: int, msg: InboundMessage, answer: Answer) -> Outbound:
        return await self._db.session(lambda s: _store_outbound(s, conv_id, msg, answer))

    async def record_delivery(
        self, message_id: int, part: int, *, status: str, platform_msg_id: str = "", error: str = ""
    ) -> None:
        # One upsert: committed on its own (no BEGIN/COMMIT round trips after every send).
        await self._db.autocommit(
            lambda s: db.record_delivery(
                s, message_id, part, status=status, platform_msg_id=platform_msg_id, error=error
            )
        )

    async def recent_customer_texts(self, conversation_id: int, limit: int) -> list[str]:
        return await self._db.autocommit(
            lambda s: handoff_state.recent_customer_texts(s, conversation_id, limit)
        )

    def customer_reader(self) -> None:
        return None  # the agent's BindingStore reads it in a thread, as fast as these would

    async def close(self) -> None:
        return None  # the Database is the runtime's, closed by it


def _store_inbound(
    session: Session, msg: InboundMessage, absorbed: list[InboundMessage], settings: Settings
) -> Inbound:
    """One transaction (committed by the recall): the conversation, the messages and the
    memory row are written together, by Core statements of the columns the turn uses."""
    conv_id, state = db.conversation_of(session, msg)
    inbound = db.record_inbound(session, conv_id, msg, commit=False)
    rows = [inbound]
    for extra in absorbed:
        rows.append(db.record_inbound(session, conv_id, extra, commit=False))
    recalled = memory.recall_turn(session, conv_id, inbound, settings)
    stored = [s for s in map(memory.said, rows) if s is not None]
    return Inbound(conv_id, recalled, stored, state)


def _store_outbound(
    session: Session, conv_id: int, msg: InboundMessage, answer: Answer
) -> Outbound:
    """The answer, its record and its tokens in one transaction."""
    outbound = db.record_outbound(
        session,
        conv_id,
        msg,
        answer.text,
        backend=answer.backend,
        degraded=answer.degraded,
        commit=False,
    )
    outbound_id = outbound.id or 0
    turns.record(
        session,
        message_id=outbound_id,
        conversation_id=conv_id,
        outcome=outcome_of(answer),
        backend=answer.backend,
        confidence=answer.confidence,
        sent_at=msg.sent_at,
        trace=tracing.dumps(answer.trace),
        commit=False,
    )
    used = usage.store(
        session,
        conversation_id=conv_id,
        message_id=outbound_id,
        purpose="answer",
        backend=answer.backend,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
    )
    db.touch(session, conv_id)  # last: the conversation's row is locked until the commit
    session.commit()
    usage.count(used)
    said = memory.said(outbound)
    return Outbound(outbound_id, [said] if said is not None else [])


def outcome_of(answer: Answer) -> str:
    """The turn record's outcome for `answer` (bot/agent/trace.py OUTCOMES)."""
    return tracing.outcome_of(
        answer.outcome, answer.backend, answer.degraded, answer.handoff_reason
    )
