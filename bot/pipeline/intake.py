"""The web side of the queue: deduplicate, ticket and enqueue a message in one Redis step.

One script (`EVALSHA`, one round trip) sets the dedup key on the platform's event id,
draws the message's turn ticket in its conversation, notes a text message as pending for
burst coalescing (bot/pipeline/coalesce.py) and pushes the Celery task message onto the
queue. All of it happens, or none of it: a message can no longer be marked as seen
without being queued. If Redis stalls and our client gives up while Redis still runs the
script, the message *is* queued, and the platform's retry is rightly a duplicate.

Nothing is acknowledged that is not safely queued: a failure here surfaces as
`IntakeUnavailableError` and the web process answers 503 so the platform retries.

Messages accepted in the same turn of the event loop share one round trip: their scripts
go to Redis as one pipeline (each still atomic on its own), which under a burst costs a
fraction of a command each in the client; a lone message waits one loop turn, no more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from bot import keys
from bot.broker import handle_message_parts
from bot.domain import InboundMessage
from bot.lua import LuaScript
from bot.pipeline import coalesce

log = logging.getLogger(__name__)

# KEYS: dedup, seq counter, burst set, queue list[, the signature's claim]. ARGV: dedup
# ttl, seq ttl, burst ttl, burst entry ("" for none), the task message's head, mid and
# tail (bot/broker.py)[, the event id and the signature window]. Returns the ticket
# (1, 2, ...), 0 when the event id was seen before, -1 when the signature already
# carried another message (a replay).
_INTAKE = """
if KEYS[5] then
  local claimed = redis.call('GET', KEYS[5])
  if not claimed then
    redis.call('SET', KEYS[5], ARGV[8], 'EX', ARGV[9])
  elseif claimed ~= ARGV[8] then
    return -1
  end
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
local seq = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[3], seq, ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[3])
end
redis.call('LPUSH', KEYS[4], ARGV[5] .. seq .. ARGV[6] .. seq .. ARGV[7])
return seq
"""
_INTAKE_SCRIPT = LuaScript(_INTAKE)


class IntakeUnavailableError(Exception):
    """Redis could not take the message; the platform must retry."""


# What `accept` returns for a message whose single-use signature carried another one.
REPLAYED = -1


# Past this many scripts a pipeline is sent and the next one begins.
BATCH_LIMIT = 128
Call = tuple[tuple[str, ...], tuple[Any, ...], "asyncio.Future[Any]"]


class _Batch:
    """The intake scripts waiting to go to one Redis client, sent as one pipeline each
    loop turn. A reply that is an error fails only its own message."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.waiting: list[Call] = []
        self.sending: set[asyncio.Task[None]] = set()

    def submit(self, names: tuple[str, ...], argv: tuple[Any, ...]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        if not self.waiting:
            loop.call_soon(self._flush)
        self.waiting.append((names, argv, done))
        if len(self.waiting) >= BATCH_LIMIT:
            self._flush()
        return done

    def _flush(self) -> None:
        calls, self.waiting = self.waiting, []
        if calls:
            # Held here so it runs to the end whoever stops waiting for it.
            task = asyncio.get_running_loop().create_task(self._send(calls))
            self.sending.add(task)
            task.add_done_callback(self.sending.discard)

    async def _send(self, calls: list[Call]) -> None:
        if len(calls) == 1:
            names, argv, done = calls[0]
            await _settle(done, _INTAKE_SCRIPT(self.redis, names, argv))
            return
        pipe = self.redis.pipeline(transaction=False)
        for names, argv, _ in calls:
            pipe.evalsha(_INTAKE_SCRIPT.sha, len(names), *names, *argv)  # type: ignore[misc]
        try:
            replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for _, _, done in calls:
                done.cancel()
            raise
        except Exception as exc:  # every waiter gets it, nothing else
            for _, _, done in calls:
                if not done.done():
                    done.set_exception(exc)
            return
        for (names, argv, done), reply in zip(calls, replies, strict=True):
            if isinstance(reply, NoScriptError):  # a fresh or restarted Redis: send the text
                await _settle(done, _INTAKE_SCRIPT(self.redis, names, argv))
            elif isinstance(reply, BaseException):
                done.set_exception(reply)
            elif not done.done():
                done.set_result(reply)


async def _settle(done: asyncio.Future[Any], call: Any) -> None:
    try:
        result = await call
    except asyncio.CancelledError:
        done.cancel()
        raise
    except Exception as exc:  # handed to the waiter
        if not done.done():
            done.set_exception(exc)
        return
    if not done.done():
        done.set_result(result)


_BATCHES: weakref.WeakKeyDictionary[aioredis.Redis, _Batch] = weakref.WeakKeyDictionary()


def _batch(redis: aioredis.Redis) -> _Batch:
    batch = _BATCHES.get(redis)
    if batch is None:
        batch = _BATCHES[redis] = _Batch(redis)
    return batch


async def accept(redis: aioredis.Redis, msg: InboundMessage, signature_claim: str = "") -> int:
    """Queue `msg` unless seen before: its turn ticket when queued, 0 for a duplicate.

    `signature_claim` (a key of `keys.signature_seen`): the request's signature may carry
    this one message only, for the platform's signature window; the platform's own retry
    of it (same event id) passes and is deduplicated as usual, another message under the
    same signature is a replay, `REPLAYED`, and nothing is queued.
    """
    # Encoded once for both the task message and the burst entry.
    payload = json.dumps(msg.to_json(), ensure_ascii=False)
    head, mid, tail = handle_message_parts(
        payload, f"[<{msg.platform.value}/{msg.app} {msg.event_id}>]"
    )
    names: tuple[str, ...] = (
        keys.dedup(msg),
        keys.sequence(msg.conversation_key),
        keys.burst(msg.conversation_key),
        keys.QUEUE,
    )
    pending = coalesce.pending_entry(msg, payload_json=payload)
    argv: tuple[Any, ...] = (
        keys.DEDUP_TTL_S,
        keys.SEQ_TTL_S,
        keys.BURST_PENDING_TTL_S,
        pending,
        head,
        mid,
        tail,
    )
    if signature_claim:
        names = (*names, signature_claim)
        argv = (*argv, msg.event_id, keys.SIGNATURE_WINDOW_S)
    try:
        # Shielded: a request that stops waiting (its client went away) leaves the
        # pipeline, and the other messages in it, to finish.
        seq = await asyncio.shield(_batch(redis).submit(names, argv))
    except aioredis.RedisError as exc:
        raise IntakeUnavailableError(f"redis: {type(exc).__name__}") from exc
    if seq > 0:
        log.debug("queued %s %s %s as #%s", msg.platform, msg.app, msg.event_id, seq)
    return int(seq)
