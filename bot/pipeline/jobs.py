"""What the worker does with one queued message, and how it keeps trying.

A queued message is a pull trigger (微信客服), a platform event to record, or a turn to
answer (its media fetched first). A transient failure (Redis, the database, the broker or
a platform briefly down) is tried again here, in the same process, with backoff: a retry
never needs to publish anything, so an outage of the broker itself loses nothing. When the
tries are used up the message goes back to the queue (`RequeueError`), or, when even that
is impossible, stays unacknowledged and is delivered again after the visibility timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy.exc import SQLAlchemyError

from bot.db.engine import is_unavailable
from bot.domain import InboundMessage
from bot.errors import PlatformRejectedError, TransientError
from bot.pipeline import events, files, media, pull, quotes, refusals, turn, vision, voice
from bot.runtime import Runtime

log = logging.getLogger(__name__)

# Seconds between tries of one job (jittered ±25 %): under 20 s in all, so a turn's deadline
# plus its retries stay under the broker's visibility timeout (60 s by default) and a
# redelivered copy does not race this one.
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)
# A message older than this is not worth answering any more (the platforms' dedup window).
MAX_AGE_S = 24 * 3600


class RequeueError(Exception):
    """The job kept failing transiently: put the message back on the queue."""


async def handle_message(
    runtime: Callable[[], Awaitable[Runtime]], payload: dict[str, Any], seq: int = 0
) -> str:
    """Run one queued message to its end with the process's runtime (opened by `runtime`,
    tried again like the steps: it connects to the database); the outcome."""
    msg = InboundMessage.from_json(payload)

    async def job() -> str:
        with _outage_is_transient():
            rt = await runtime()
        return await _run(rt, msg, seq)

    return await with_retries(job, msg)


async def _run(rt: Runtime, msg: InboundMessage, seq: int) -> str:
    try:
        # A database restarting or failing over is tried again, like Redis below: the turn's
        # rows are written once each and its sends marked, so a new try repeats nothing.
        with _outage_is_transient():
            return await _steps(rt, msg, seq)
    except aioredis.RedisError as exc:
        # Every step reads or writes Redis (a file remembered, a transcript, a lock): any
        # of them failing is worth another try, never a task failed for good (and lost).
        raise TransientError(f"redis unavailable: {exc}") from exc


@contextlib.contextmanager
def _outage_is_transient() -> Iterator[None]:
    """A database error that says it is unavailable becomes a TransientError (tried
    again); any other database error goes on as it is."""
    try:
        yield
    except SQLAlchemyError as exc:
        if not is_unavailable(exc):
            raise
        raise TransientError(f"database unavailable: {_first_line(exc)}") from exc


def _first_line(exc: SQLAlchemyError) -> str:
    # SQLAlchemy's text adds the statement and a link on further lines: one log line.
    orig = getattr(exc, "orig", None)  # the driver's own error, when there is one
    return str(orig if orig is not None else exc).strip().split("\n", 1)[0]


async def _steps(rt: Runtime, msg: InboundMessage, seq: int) -> str:
    if pull.is_pull(msg):
        # 微信客服's callback only says "pull now": queue what the pull returns, answer nothing.
        return await pull.run(msg, rt)
    if events.is_platform_event(msg):
        # Group changes, check_url…: recorded (and maybe a group welcome queued), not answered.
        return await events.run(msg, rt)
    if media.wants_fetch(msg):
        # Pictures/files the user sent: saved first; the answer comes from the placeholder.
        msg = await media.fetch(msg, rt)
    # Voice without the platform's transcript: speech recognition makes it the turn's text.
    msg = await voice.transcribe(msg, rt)
    # A reply quoting an earlier message is asked with the quoted text (Feishu).
    msg = await quotes.read(msg, rt)
    # Files (PDF, DOCX, XLSX, text): read as text for this and the conversation's next turns.
    msg = await files.prepare(msg, rt)
    # With a vision model: pictures (this message's, or the conversation's latest) go along.
    msg = await vision.prepare(msg, rt)
    return await turn.run(msg, rt, seq=seq)


async def with_retries(
    job: Callable[[], Awaitable[str]],
    msg: InboundMessage,
    *,
    delays: tuple[float, ...] = RETRY_DELAYS_S,
    rng: random.Random | None = None,
) -> str:
    """`job()`, tried again after each TransientError; RequeueError when none succeeded."""
    rng = rng or random.Random()  # noqa: S311 - jitter, not security
    for attempt in range(len(delays) + 1):
        try:
            return await job()
        except PlatformRejectedError as exc:
            # Not retried (a send refused for good is recorded by the turn; this is the rest:
            # a pull or a token refused): said with what to fix, then as before.
            log.error("platform refused %s %s %s: %s%s", *_ids(msg), exc, refusals.observe(exc))
            raise
        except TransientError as exc:
            hint = refusals.observe(exc)  # a platform's busy or token codes, counted
            age_s = (datetime.now(UTC) - msg.sent_at).total_seconds()
            if age_s > MAX_AGE_S:
                log.error(
                    "giving up %s %s %s after %.0f h: %s",
                    msg.platform,
                    msg.app,
                    msg.event_id,
                    age_s / 3600,
                    exc,
                )
                return "expired"
            if attempt == len(delays):
                log.warning(
                    "requeueing %s %s %s after %d tries: %s%s",
                    msg.platform,
                    msg.app,
                    msg.event_id,
                    attempt + 1,
                    exc,
                    hint,
                )
                raise RequeueError(str(exc)) from exc
            log.warning(
                "transient failure %s %s %s (try %d): %s%s",
                msg.platform,
                msg.app,
                msg.event_id,
                attempt + 1,
                exc,
                hint,
            )
            await asyncio.sleep(delays[attempt] * rng.uniform(0.75, 1.25))
    raise AssertionError("unreachable")  # the loop returns or raises


def _ids(msg: InboundMessage) -> tuple[str, str, str]:
    return (msg.platform.value, msg.app, msg.event_id)
