"""One inbound message, answered exactly once: lock, remember, think, send, record.

Run by the worker for every queued message (`workers.tasks.handle_message`):

1. Take the conversation's Redis lock (kept alive while we work) and wait for the turn
   ticket the web process gave this message, so turns of one conversation run in order.
2. Return if `replied:` is set (a platform retry or a redelivered task). Quick follow-ups
   of the same user join this turn (bot/pipeline/coalesce.py); a user over the rate limit gets one
   notice, then silence (bot/pipeline/ratelimit.py).
3. Store the inbound message, load the session's memory (bot/agent/memory.py), ask the agent
   (its answer is cached in Redis so a retry after a failed send does not ask the model
   again).
4. Send each part unless its `sent:` marker exists; set the marker after each send, then
   `replied:`. A failed send raises TransientError and the job is tried again
   (bot/pipeline/jobs.py).

Every conversation in flight shares the process's event loop (`bot.runtime.Runtime`).
The turn's own rows go through `rt.rows` (bot/pipeline/turn_rows.py: asyncpg on the loop
for PostgreSQL, the database threads otherwise); everything else is awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.lock import Lock

from adapters.base import Finishes, Sender, StreamsAnswers
from bot import keys, live, metrics
from bot.agent import memory
from bot.agent import trace as tracing
from bot.agent.agent import Agent, Answer
from bot.domain import InboundMessage, MessageKind, Reply
from bot.errors import BotError, PermanentError, TransientError
from bot.handoff import flow as handoff
from bot.pipeline import autoreply, coalesce, lock_keeper, passive, ratelimit, refusals
from bot.runtime import Runtime
from bot.settings import Settings

log = logging.getLogger(__name__)

LOCK_WAIT_S = 120.0
ORDER_WAIT_S = 15.0  # how long a turn waits for an earlier turn that may have been lost


async def run(msg: InboundMessage, rt: Runtime, *, seq: int = 0) -> str:
    """Answer `msg` with the process's shared clients; "replied", "duplicate", or why not."""
    try:
        sender = rt.sender(msg.platform, msg.app)
    except KeyError:
        # The web process accepted it, so this worker's configuration differs.
        log.error(
            "no sender for %s %s %s: is the platform configured on this worker?",
            msg.platform,
            msg.app,
            msg.event_id,
        )
        metrics.REPLIES.labels(msg.platform.value, "unroutable").inc()
        return "unroutable"
    try:
        agent = rt.agent(msg.platform.value, msg.app)
        return await handle(msg, seq=seq, rt=rt, sender=sender, agent=agent)
    except aioredis.RedisError as exc:
        raise TransientError(f"redis unavailable: {exc}") from exc


async def handle(
    msg: InboundMessage, *, seq: int, rt: Runtime, sender: Sender, agent: Agent
) -> str:
    redis, http, settings = rt.redis, rt.http, rt.settings
    async with _conversation_turn(redis, msg, seq, settings.core.lock_ttl_s) as ticket:
        if ticket.replied_before:
            log.info("duplicate %s %s %s: already replied", msg.platform, msg.app, msg.event_id)
            metrics.REPLIES.labels(msg.platform.value, "duplicate").inc()
            return "duplicate"
        if msg.kind is MessageKind.EVENT and not await redis.set(
            keys.welcomed(msg.conversation_key), "1", nx=True, ex=keys.WELCOME_EVERY_S
        ):
            # Entering the app again the same day should not greet the user again.
            if passive.waits_passively(sender):
                await passive.offer(redis, msg, None)  # let a waiting webhook answer now
            metrics.REPLIES.labels(msg.platform.value, "skipped").inc()
            return "skipped"
        # Burst coalescing (bot/pipeline/coalesce.py): quick follow-ups join this turn, or
        # this message already joined an earlier one.
        absorbed = await coalesce.take(
            redis, msg, seq, settings.core.burst_window_s, looked=ticket.burst
        )
        if absorbed is None:
            return await _unanswered(redis, sender, msg, "coalesced", ticket)
        for extra in absorbed:
            await passive.release(redis, sender, extra)  # their waiting requests answer now
        conv_id, recalled, stored, state = await rt.rows.store_inbound(msg, absorbed, settings)
        # An open console page shows the message at once: the signal goes with the handoff
        # gate's round trip (sent alone on the paths that end before it).
        announce = functools.partial(live.queue, conversation_id=conv_id)
        msg = coalesce.joined(msg, absorbed)  # same event id and address, the burst's text
        if msg.kind is MessageKind.TEXT and (await _rate(redis, msg, settings)).silent:
            await live.changed(redis, conv_id)
            return await _unanswered(redis, sender, msg, "limited", ticket)
        # Human handoff (bot/handoff/flow.py): silent while a person holds the conversation.
        gate = await handoff.before_turn(
            msg,
            conv_id,
            redis=redis,
            http=http,
            sender=sender,
            settings=settings,
            db=rt.db,
            state=state,
            also=announce,
        )
        if gate.silent:
            ticket.answered = True
            metrics.REPLIES.labels(msg.platform.value, "human").inc()
            return "human"
        if gate.answer is not None:
            answer = gate.answer
        else:
            answer, fresh = await _answer(redis, msg, agent, recalled.history, sender, settings)
            # The model's answer is cached (so a retry after a failed send does not ask
            # again) in the hook's first round trip, before anything is stored or sent.
            answer = await handoff.after_answer(
                msg,
                conv_id,
                answer,
                redis=redis,
                http=http,
                settings=settings,
                db=rt.db,
                also=_cache(msg, answer) if fresh else None,
                recent=rt.rows.recent_customer_texts,
            )
            answer = handoff.with_notice(answer, gate.notice)  # back from an idle human
        reply = Reply.to(msg, answer.text, answer.sources, answer.citations)
        outbound, said = await rt.rows.store_outbound(conv_id, msg, answer)
        # Whether the next answer could still show every turn: then there is nothing to
        # summarise, and no summary step (a Redis guard and a database read) is run.
        summarise = memory.needs_summary(recalled, [*stored, *said], settings)
        await _deliver(rt, sender, msg, reply, outbound, conv_id)  # and the console's signal
        await handoff.after_delivery(msg, redis=redis, http=http, sender=sender)  # 微信客服
        ticket.answered = True  # written with the served ticket, before the lock goes
        outcome = "degraded" if answer.degraded else "answered"
        metrics.REPLIES.labels(msg.platform.value, outcome).inc()
        log.info(
            "replied %s %s %s via %s",
            msg.platform,
            msg.app,
            msg.event_id,
            answer.backend or "fallback",
        )
    # After the lock: the next message of this conversation does not wait for the summary.
    if summarise:
        await _condense(rt, msg, conv_id)
    return "replied"


async def _rate(
    redis: aioredis.Redis, msg: InboundMessage, settings: Settings
) -> ratelimit.Decision:
    """The sender's rate limit for `msg` (decided once per message, so safe to ask again)."""
    return await ratelimit.check(
        redis, msg, per_minute=settings.core.rate_per_minute, per_day=settings.core.rate_per_day
    )


async def _unanswered(
    redis: aioredis.Redis, sender: Sender, msg: InboundMessage, outcome: str, ticket: _TurnState
) -> str:
    """End a turn that sends nothing: let waiting requests go, remember it is done."""
    await passive.release(redis, sender, msg)
    ticket.answered = True
    metrics.REPLIES.labels(msg.platform.value, outcome).inc()
    if outcome == "coalesced":
        metrics.COALESCED.labels(msg.platform.value).inc()
    elif outcome == "limited":
        metrics.RATE_LIMITED.labels(msg.platform.value, "any", "silent").inc()
    log.info("%s %s %s %s: no reply of its own", outcome, msg.platform, msg.app, msg.event_id)
    return outcome


async def _condense(rt: Runtime, msg: InboundMessage, conv_id: int) -> None:
    """Summarise turns the next answer cannot show (bot/agent/memory.py), after the turn's lock.

    One summary at a time per conversation (SET NX, expiring after the model's timeout):
    a turn that ends while an earlier one still summarises leaves it to that one, and the
    turn after picks up whatever is left.
    """
    guard = keys.condensing(msg.conversation_key)
    settings = rt.settings
    try:
        if not await rt.redis.set(
            guard, "1", nx=True, ex=int(settings.core.summary_timeout_s) + 30
        ):
            return
        try:
            await memory.condense(rt.db, conv_id, settings, lambda: rt.router)
        finally:
            await rt.redis.delete(guard)
    except Exception:
        # The answer is sent and recorded; a failed summary is retried on the next turn.
        log.exception("summarising %s failed", msg.conversation_key)


async def _answer(
    redis: aioredis.Redis,
    msg: InboundMessage,
    agent: Agent,
    history: list,
    sender: Sender,
    settings: Settings,
) -> tuple[Answer, bool]:
    """The answer, and whether it is the model's, new: the caller caches it (`_cache`)."""
    async with redis.pipeline(transaction=False) as pipe:  # one round trip for both reads
        pipe.get(keys.answer(msg))
        pipe.get(keys.AUTOREPLY_VERSION)  # read here for the rules below, unless answered
        cached, version = await pipe.execute()
    if cached:
        return Answer.from_json(cached), False
    if memory.is_reset(msg):
        # "重新开始": memory.recall already started a new session; confirm, no model call.
        backend = memory.COMMAND_BACKEND
        return Answer(text=memory.RESET_TEXT, backend=backend, outcome=tracing.OTHER), False
    limit = await _rate(redis, msg, settings)
    if not limit.allowed:
        metrics.RATE_LIMITED.labels(msg.platform.value, limit.window, "notice").inc()
        # The one notice per window.
        return Answer(text=limit.notice, backend="ratelimit", outcome=tracing.OTHER), False
    rule_text = await autoreply.find_reply(msg, settings, redis, autoreply.version_of(version))
    if rule_text is not None:
        # The account's own keyword rule answers before any model (like the MP console).
        return Answer(text=rule_text, backend="rule", outcome=tracing.RULE), False
    on_delta = sender.delta_sink(Reply.to(msg, "")) if isinstance(sender, StreamsAnswers) else None
    return await agent.reply(history, msg, on_delta=on_delta), True


def _cache(msg: InboundMessage, answer: Answer) -> Callable[[Pipeline], object]:
    """Queues the write of `answer` to `msg`'s answer cache on a pipeline."""
    key, value = keys.answer(msg), answer.to_json()
    return lambda pipe: pipe.set(key, value, ex=keys.ANSWER_TTL_S)


async def _deliver(
    rt: Runtime, sender: Sender, msg: InboundMessage, reply: Reply, outbound: int, conv_id: int
) -> None:
    """Send `reply`'s parts once each; the console's signal for `conv_id` (the answer is
    stored) goes with the first part's markers."""
    redis = rt.redis

    async def record(index: int, **outcome: str) -> None:
        await rt.rows.record_delivery(outbound, index, **outcome)

    parts = sender.split(reply.text)
    announce = bool(parts) and not passive.waits_passively(sender)
    if not announce:
        await live.changed(redis, conv_id)
    if passive.waits_passively(sender):
        # The webhook request may be waiting to carry the answer itself (pipeline/passive.py).
        text = parts[0] if len(parts) == 1 else None
        if await passive.offer(redis, msg, text) == passive.PASSIVE:
            marker = keys.sent_part(msg, 0)
            if not await redis.exists(marker):
                await redis.set(marker, passive.PASSIVE, ex=keys.MARKER_TTL_S)
                await record(0, status="sent", platform_msg_id=passive.PASSIVE)
                metrics.DELIVERIES.labels(msg.platform.value, "passive").inc()
            return
    for index, part in enumerate(parts):
        marker = keys.sent_part(msg, index)
        attempt = keys.sending_part(msg, index)
        async with redis.pipeline(transaction=False) as pipe:
            if announce:
                live.queue(pipe, conv_id)
                announce = False
            pipe.exists(marker)
            pipe.set(attempt, "1", nx=True, ex=keys.MARKER_TTL_S)
            sent_before, first_attempt = (await pipe.execute())[-2:]
        if sent_before:
            continue  # sent before a crash or a failed later part
        out = reply.with_text(part)
        if not first_attempt:  # an earlier attempt may have been delivered
            out = dataclasses.replace(out, resend=True)
        try:
            platform_id = await sender.send(out, rt.http)
        except BotError as exc:
            await record(index, status="failed", error=str(exc))
            metrics.DELIVERIES.labels(msg.platform.value, "failed").inc()
            if isinstance(exc, PermanentError):
                log.error(
                    "send rejected %s %s %s part %d: %s%s",
                    msg.platform,
                    msg.app,
                    msg.event_id,
                    index,
                    exc,
                    refusals.observe(exc),  # counted; the known codes explained
                )
                return
            raise
        await redis.set(marker, platform_id or "1", ex=keys.MARKER_TTL_S)
        await record(index, status="sent", platform_msg_id=platform_id)
        metrics.DELIVERIES.labels(msg.platform.value, "sent").inc()
    if isinstance(sender, Finishes):
        await sender.finish(reply)


@dataclasses.dataclass(slots=True)
class _TurnState:
    """What `_conversation_turn` read with its ticket, and what it writes with it."""

    replied_before: bool  # `replied:` was set: a retry or a redelivered task
    burst: list[Any]  # the burst step's first look (`coalesce.look`), read with the lock
    answered: bool = False  # set `replied:` with the ticket when the turn ends normally


@contextlib.asynccontextmanager
async def _conversation_turn(
    redis: aioredis.Redis, msg: InboundMessage, seq: int, lock_ttl_s: float
) -> AsyncIterator[_TurnState]:
    """Hold the conversation lock for this turn, after earlier turns (by ticket) are done.

    The lock is taken with the served ticket, the replied marker and the burst step's first
    look read (one round trip when it is free), and the marker is written with the ticket
    when the body set `answered`, followed by the lock's release (one round trip)."""
    conv = msg.conversation_key
    served_key = keys.served(conv)
    lock_name = keys.conversation_lock(conv)
    deadline = time.monotonic() + ORDER_WAIT_S
    while True:
        lock = Lock(redis, lock_name, timeout=lock_ttl_s, blocking_timeout=LOCK_WAIT_S)
        raw_served, replied, burst = await _acquire_and_read(
            redis, lock, conv, served_key, keys.replied(msg), msg, seq
        )
        served = int(raw_served or 0)
        if seq <= 0 or served >= seq - 1 or time.monotonic() >= deadline:
            break
        await lock.release()  # an earlier turn is still queued: let it go first
        await asyncio.sleep(0.1)
    # Renewed while we work with every other lock this process holds (one round trip a tick).
    keeper = lock_keeper.keeper(redis, lock_ttl_s)
    keeper.hold(lock_name, lock.local.token)
    try:
        state = _TurnState(replied_before=bool(replied), burst=burst)
        yield state
    except BaseException:
        keeper.drop(lock_name)
        with contextlib.suppress(aioredis.RedisError, Exception):
            await lock.release()
        raise
    keeper.drop(lock_name)
    # The markers, then the lock's release, in one round trip (run in this order by Redis).
    async with redis.pipeline(transaction=False) as pipe:
        if state.answered:
            pipe.set(keys.replied(msg), "1", ex=keys.MARKER_TTL_S)
        if seq > served:
            pipe.set(served_key, seq, ex=keys.MARKER_TTL_S)
        marks = len(pipe)
        token = lock.local.token
        if token is not None and lock.lua_release is not None:
            # By SHA in the pipeline (a registered script would add a SCRIPT EXISTS trip).
            pipe.evalsha(lock.lua_release.sha, 1, lock.name, token)  # type: ignore[arg-type]
        try:
            results = await pipe.execute(raise_on_error=False)
        except BaseException:
            with contextlib.suppress(aioredis.RedisError, Exception):
                await lock.release()  # as before: the lock goes whatever the markers did
            raise
    if len(results) > marks and isinstance(results[marks], Exception):
        with contextlib.suppress(aioredis.RedisError, Exception):
            await lock.release()  # the script was not loaded (a restarted Redis): by text
    lock.local.token = None
    for result in results[:marks]:
        if isinstance(result, Exception):
            raise result  # a marker not written: the turn is tried again


async def _acquire_and_read(
    redis: aioredis.Redis,
    lock: Lock,
    conv: str,
    served_key: str,
    replied_key: str,
    msg: InboundMessage,
    seq: int,
) -> tuple[Any, Any, list[Any]]:
    """Take `lock` and read the served ticket, the replied marker and the burst step's first
    look: one round trip when the lock is free (the reads run after the `SET NX` on the
    server, so they see what the previous holder wrote before its release); else wait for
    it, then read."""

    def read(pipe: Pipeline) -> None:
        pipe.get(served_key)
        pipe.exists(replied_key)
        coalesce.look(pipe, msg, seq)

    token = uuid.uuid4().hex.encode()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(lock.name, token, nx=True, px=int(lock.timeout * 1000) if lock.timeout else None)
        read(pipe)
        taken, raw_served, replied, *burst = await pipe.execute()
    if taken:
        lock.local.token = token
        return raw_served, replied, burst
    if not await lock.acquire():
        raise TransientError(f"conversation {conv} stayed busy for {LOCK_WAIT_S:.0f}s")
    async with redis.pipeline(transaction=False) as pipe:
        read(pipe)
        raw_served, replied, *burst = await pipe.execute()
    return raw_served, replied, burst
