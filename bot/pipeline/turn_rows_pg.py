"""A turn's rows on PostgreSQL: each step one statement through asyncpg (bot/db/pg.py).

The same rows, keys and decisions as `ThreadedRows` (bot/pipeline/turn_rows.py), which
SQLite uses; the tests run the turn on both. Each step is one statement: data-modifying
`WITH` clauses write the rows together, atomically, and read back what the turn needs,
in one round trip and without BEGIN and COMMIT:

- inbound: the conversation (created when new), the messages, the memory row (created
  when new), the message before and the session's rows: 1 round trip instead of about 9;
  a new session (after a reset or an idle gap) adds one UPDATE;
- outbound: the answer, its turn record, its tokens and the conversation's time: 1 instead
  of 7;
- a delivery: 1 upsert, as before; the handoff's repeat check: 1 read, as before, but on
  the loop.

Times go in as `timestamptz`, the columns' own type (bot/db/models.py): an instant, the
same whatever time zone the server's sessions are in. Table and column names are SQLModel's
(bot/db/models.py).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from bot.agent import memory
from bot.agent import trace as tracing
from bot.agent.agent import Answer
from bot.db import pg, turns, usage
from bot.db import records as db
from bot.domain import InboundMessage
from bot.errors import TransientError
from bot.pipeline.turn_rows import Inbound, Outbound, outcome_of
from bot.settings import Settings
from bot.tools.orders import CustomerOf

log = logging.getLogger(__name__)

# Everything the inbound step writes and reads. $1-$3 the conversation's key, $4 is_group,
# $5 now, $6-$9 the messages (event ids, senders, kinds, texts; the answered one first),
# $10 the backends memory does not show, $11 the most session rows read.
INBOUND = """
WITH found AS (
    SELECT id, state FROM conversation
    WHERE platform = $1::text AND app = $2::text AND external_id = $3::text
), made AS (
    INSERT INTO conversation (platform, app, external_id, is_group, state, created_at, updated_at)
    SELECT $1::text, $2::text, $3::text, $4::boolean, 'bot', $5::timestamptz, $5::timestamptz
    WHERE NOT EXISTS (SELECT FROM found)
    ON CONFLICT (platform, app, external_id) DO NOTHING
    RETURNING id, state
), conv AS (
    SELECT id, state FROM found UNION ALL SELECT id, state FROM made
), before AS (  -- rows of these events stored by an earlier try
    SELECT m.id, m.platform_msg_id, m.created_at
    FROM message m JOIN conv ON m.conversation_id = conv.id
    WHERE m.direction = 'in' AND m.platform_msg_id = ANY($6::text[])
), added AS (
    INSERT INTO message
        (conversation_id, direction, platform_msg_id, sender_id, kind, text, backend, degraded,
         created_at)
    SELECT conv.id, 'in', e.event_id, e.sender_id, e.kind, e.text, '', false, $5::timestamptz
    FROM conv, unnest($6::text[], $7::text[], $8::text[], $9::text[]) WITH ORDINALITY
        AS e(event_id, sender_id, kind, text, n)
    ORDER BY e.n
    ON CONFLICT (conversation_id, direction, platform_msg_id) DO NOTHING
    RETURNING id, platform_msg_id, created_at
), events AS (
    SELECT * FROM added UNION ALL SELECT * FROM before
), mem_found AS (
    SELECT cm.id, cm.session_start_id, cm.summarised_upto_id, cm.summary
    FROM conversationmemory cm JOIN conv ON cm.conversation_id = conv.id
), mem_made AS (
    INSERT INTO conversationmemory
        (conversation_id, session_start_id, session_started_at, summary, summarised_upto_id,
         updated_at)
    SELECT conv.id, 0, $5::timestamptz, '', 0, $5::timestamptz FROM conv
    WHERE NOT EXISTS (SELECT FROM mem_found)
    ON CONFLICT (conversation_id) DO NOTHING
    RETURNING id, session_start_id, summarised_upto_id, summary
), mem AS (
    SELECT * FROM mem_found UNION ALL SELECT * FROM mem_made
), bound AS (  -- the answered message when an earlier try stored it; else every row is older
    SELECT coalesce((SELECT id FROM before WHERE platform_msg_id = ($6::text[])[1]),
                    2147483647) AS below
), previous AS (
    SELECT m.id, m.created_at FROM message m, conv, bound
    WHERE m.conversation_id = conv.id AND m.id < bound.below
    ORDER BY m.id DESC LIMIT 1
), session AS (
    SELECT m.id, m.direction, m.text FROM message m, conv, mem, bound
    WHERE m.conversation_id = conv.id AND m.id < bound.below
      AND m.id >= greatest(mem.session_start_id, mem.summarised_upto_id + 1)
      AND m.kind = 'text' AND m.backend <> ALL($10::text[])
    ORDER BY m.id DESC LIMIT $11::int
)
SELECT conv.id, conv.state,
    (SELECT array_agg(platform_msg_id ORDER BY id) FROM events) AS event_ids,
    (SELECT array_agg(id ORDER BY id) FROM events) AS message_ids,
    (SELECT array_agg(created_at ORDER BY id) FROM events) AS message_times,
    mem.id AS memory_id, mem.session_start_id, mem.summarised_upto_id, mem.summary,
    previous.id AS previous_id, previous.created_at AS previous_at,
    (SELECT array_agg(id ORDER BY id) FROM session) AS said_ids,
    (SELECT array_agg(direction ORDER BY id) FROM session) AS said_directions,
    (SELECT array_agg(text ORDER BY id) FROM session) AS said_texts
FROM conv LEFT JOIN mem ON true LEFT JOIN previous ON true
"""

START_SESSION = """
UPDATE conversationmemory
SET session_start_id = $2::int, session_started_at = $3::timestamptz, summary = '',
    summarised_upto_id = 0, updated_at = $3::timestamptz
WHERE id = $1::int
"""

# $1 the conversation, $2 "reply:<event id>", $3 text, $4 backend, $5 degraded, $6 now,
# $7 outcome, $8 confidence, $9 latency, $10 trace, $11-$12 prompt and completion tokens.
OUTBOUND = """
WITH added AS (
    INSERT INTO message
        (conversation_id, direction, platform_msg_id, sender_id, kind, text, backend, degraded,
         created_at)
    VALUES ($1::int, 'out', $2::text, '', 'text', $3::text, $4::text, $5::boolean,
            $6::timestamptz)
    ON CONFLICT (conversation_id, direction, platform_msg_id) DO NOTHING
    RETURNING id, kind, text, backend
), answer AS (
    SELECT * FROM added
    UNION ALL
    SELECT id, kind, text, backend FROM message
    WHERE conversation_id = $1::int AND direction = 'out' AND platform_msg_id = $2::text
), recorded AS (
    INSERT INTO turnrecord
        (message_id, conversation_id, outcome, backend, confidence, latency_ms, trace, rating,
         created_at)
    SELECT id, $1::int, $7::text, $4::text, $8::float8, $9::int, $10::text, 0, $6::timestamptz
    FROM answer
    ON CONFLICT (message_id) DO NOTHING
), used AS (
    INSERT INTO tokenusage
        (conversation_id, message_id, purpose, backend, prompt_tokens, completion_tokens,
         created_at)
    SELECT $1::int, id, 'answer', $4::text, $11::int, $12::int, $6::timestamptz FROM answer
    WHERE $11::int > 0 OR $12::int > 0
    ON CONFLICT (message_id, purpose) DO NOTHING
    RETURNING id
), touched AS (
    UPDATE conversation SET updated_at = $6::timestamptz WHERE id = $1::int
)
SELECT answer.id, answer.kind, answer.text, answer.backend,
    (SELECT count(*) FROM used) AS tokens_stored
FROM answer
"""

DELIVERY = """
INSERT INTO delivery (message_id, part, status, platform_msg_id, error, attempts, created_at)
VALUES ($1::int, $2::int, $3::text, $4::text, $5::text, 1, $6::timestamptz)
ON CONFLICT (message_id, part) DO UPDATE
SET status = EXCLUDED.status, platform_msg_id = EXCLUDED.platform_msg_id,
    error = EXCLUDED.error, attempts = delivery.attempts + 1
"""

# The customer's last texts since the conversation's last handoff event ($1, $2 of them).
RECENT_TEXTS = """
WITH since AS (
    SELECT (SELECT created_at FROM handoffevent WHERE conversation_id = $1::int
            ORDER BY id DESC LIMIT 1) AS at
)
SELECT m.text FROM message m, since
WHERE m.conversation_id = $1::int AND m.direction = 'in' AND m.kind = 'text'
  AND (since.at IS NULL OR m.created_at > since.at)
ORDER BY m.id DESC LIMIT $2::int
"""

# The customer a platform user is bound to (bot/orders/bindings.py), read on every turn.
CUSTOMER_OF = """
SELECT customer_id FROM customer_binding
WHERE platform = $1::text AND app = $2::text AND user_id = $3::text
LIMIT 1
"""

_NOT_REMEMBERED = sorted(memory.NOT_REMEMBERED)


class PgRows:
    """`TurnRows` on PostgreSQL through `pool`."""

    def __init__(self, pool: pg.Pool) -> None:
        self._pool = pool

    async def store_inbound(
        self, msg: InboundMessage, absorbed: list[InboundMessage], settings: Settings
    ) -> Inbound:
        messages = [msg, *absorbed]
        texts = [db.stored_text(m) for m in messages]
        kinds = [m.kind.value for m in messages]
        args = (
            msg.platform.value,
            msg.app,
            msg.conversation_id,
            msg.is_group,
            datetime.now(UTC),
            [m.event_id for m in messages],
            [m.sender_id for m in messages],
            kinds,
            texts,
            _NOT_REMEMBERED,
            memory.MAX_SESSION_ROWS,
        )
        row = await self._pool.fetchrow(INBOUND, *args)
        if row is None or row["memory_id"] is None:
            # A concurrent first turn created the conversation or its memory row after
            # this statement's snapshot: a second statement sees them.
            row = await self._pool.fetchrow(INBOUND, *args)
            if row is None or row["memory_id"] is None:
                raise TransientError(f"conversation of {msg.event_id} not readable yet")
        ids = dict(zip(row["event_ids"], row["message_ids"], strict=True))
        times = dict(zip(row["event_ids"], row["message_times"], strict=True))
        conv_id, inbound_id = int(row["id"]), int(ids[msg.event_id])
        stored = [
            said
            for m, kind, text in zip(messages, kinds, texts, strict=True)
            if (said := memory.said_of(ids[m.event_id], "in", kind, "", text)) is not None
        ]
        previous = row["previous_id"]
        start = memory.new_session_at(
            row["session_start_id"],
            memory.Arrived(inbound_id, kinds[0], texts[0], times[msg.event_id]),
            None if previous is None else (previous, row["previous_at"]),
            settings,
        )
        if start is not None:
            log.info("conversation %s: new session from message %s", conv_id, start)
            await self._pool.execute(START_SESSION, row["memory_id"], start, datetime.now(UTC))
        if start is not None or memory.asks_reset(kinds[0], texts[0]):
            # A new session starts at this message or after it: nothing before it is shown.
            recalled = memory.recalled_from([], "", settings)
        else:
            session_rows = zip(
                row["said_ids"] or (),
                row["said_directions"] or (),
                row["said_texts"] or (),
                strict=True,
            )
            recalled = memory.recalled_from(
                [memory.Said(*r) for r in session_rows], row["summary"], settings
            )
        return Inbound(conv_id, recalled, stored, str(row["state"]))

    async def store_outbound(self, conv_id: int, msg: InboundMessage, answer: Answer) -> Outbound:
        prompt, completion = max(0, answer.prompt_tokens), max(0, answer.completion_tokens)
        row = await self._pool.fetchrow(
            OUTBOUND,
            conv_id,
            f"reply:{msg.event_id}",
            answer.text,
            answer.backend,
            answer.degraded,
            datetime.now(UTC),
            outcome_of(answer),
            answer.confidence,
            turns.latency_ms(msg.sent_at),
            tracing.dumps(answer.trace),
            prompt,
            completion,
        )
        if row is None:  # the answer is inserted or was before: one row, always
            raise RuntimeError(f"the answer to {msg.event_id} was neither stored nor found")
        if row["tokens_stored"]:
            usage.count_tokens(answer.backend, prompt, completion)
        said = memory.said_of(int(row["id"]), "out", row["kind"], row["backend"], row["text"])
        return Outbound(int(row["id"]), [said] if said is not None else [])

    async def record_delivery(
        self, message_id: int, part: int, *, status: str, platform_msg_id: str = "", error: str = ""
    ) -> None:
        await self._pool.execute(
            DELIVERY,
            message_id,
            part,
            status,
            platform_msg_id or "",
            error[: db.DELIVERY_ERROR_CHARS],
            datetime.now(UTC),
        )

    async def recent_customer_texts(self, conversation_id: int, limit: int) -> list[str]:
        rows = await self._pool.fetch(RECENT_TEXTS, conversation_id, limit)
        return [str(r["text"]) for r in reversed(rows)]

    def customer_reader(self) -> CustomerOf:
        return self._customer_of

    async def _customer_of(self, platform: str, app: str, user_id: str) -> str | None:
        row = await self._pool.fetchrow(CUSTOMER_OF, platform, app, user_id)
        return None if row is None else str(row["customer_id"])

    async def close(self) -> None:
        await self._pool.close()
