"""The web side of the queue: deduplicate, ticket and enqueue a message in one Redis step.

One script (`EVALSHA`, one round trip) sets the dedup key on the platform's event id,
draws the message's turn ticket in its conversation, notes a text message as pending for
burst coalescing (bot/pipeline/coalesce.py) and pushes the Celery task message onto the
queue. All of it happens, or none of it: a message can no longer be marked as seen
without being queued. If Redis stalls and our client gives up while Redis still runs the
script, the message *is* queued, and the platform's retry is rightly a duplicate.

Nothing is acknowledged that is not safely queued: a failure here surfaces as
`IntakeUnavailableError` and the web process answers 503 so the platform retries.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from bot import keys
from bot.broker import handle_message_parts
from bot.domain import InboundMessage
from bot.lua import LuaScript
from bot.pipeline import coalesce

log = logging.getLogger(__name__)

# KEYS: dedup, seq counter, burst set, queue list. ARGV: dedup ttl, seq ttl, burst ttl,
# burst entry ("" for none), the task message's head, mid and tail (bot/broker.py).
# Returns the ticket (1, 2, ...), or 0 when the event id was seen before.
_INTAKE = """
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


async def accept(redis: aioredis.Redis, msg: InboundMessage) -> int:
    """Queue `msg` unless seen before: its turn ticket when queued, 0 for a duplicate."""
    payload = msg.to_json()
    head, mid, tail = handle_message_parts(
        payload, f"[<{msg.platform.value}/{msg.app} {msg.event_id}>]"
    )
    names = (
        keys.dedup(msg),
        keys.sequence(msg.conversation_key),
        keys.burst(msg.conversation_key),
        keys.QUEUE,
    )
    pending = coalesce.pending_entry(msg, payload=payload)
    argv = (keys.DEDUP_TTL_S, keys.SEQ_TTL_S, keys.BURST_PENDING_TTL_S, pending)
    try:
        seq = await _INTAKE_SCRIPT(redis, names, (*argv, head, mid, tail))
    except aioredis.RedisError as exc:
        raise IntakeUnavailableError(f"redis: {type(exc).__name__}") from exc
    if seq:
        log.debug("queued %s %s %s as #%s", msg.platform, msg.app, msg.event_id, seq)
    return int(seq)
