"""Burst coalescing: quick successive messages of one user are answered as one turn.

People type "在吗" / "我的订单" / "什么时候发货" as three messages; three answers (and three
model calls) would be worse than one. How it works, all in Redis:

* Intake (`pending_entry`) adds every queued text message to ``burst:{conversation}``, a
  sorted set scored by its turn ticket (`seq`), with its arrival time (short TTL).
* The worker whose turn it is (`take`, inside the conversation lock, so no other turn of the
  conversation runs meanwhile) waits until the conversation has been quiet for
  `BOT_BURST_WINDOW_S` (at most `MAX_WAIT_FACTOR` windows after its own message arrived),
  then takes the messages queued right after its own: consecutive tickets, text, same
  sender. One Lua script removes them from the set, marks each ``coalesced:`` (pointing at
  the lead) and stores the lead's record ``burst:lead:`` (the absorbed messages).
* Their own tasks then find the mark and end "coalesced" without a second answer.

Crash safety: a redelivered lead finds its record and answers the same messages (the
answer is cached per lead as usual); a message's task that runs before the lead's (tickets
keep turns in order, bounded by the pipeline's ORDER_WAIT_S) takes its own turn and removes
itself from the set, so a late lead cannot absorb an answered message. Events and non-text
messages (media placeholders: a voice message, a picture, a file) are never coalesced and end
a burst, and so does "重新开始" (a turn of its own).
Clocks: arrival times come from the web process and "now" from the worker, so hosts
should keep their clocks in sync (NTP).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from bot import keys
from bot.agent.memory import is_reset_text
from bot.domain import InboundMessage, MessageKind
from bot.lua import LuaScript

log = logging.getLogger(__name__)

MAX_WAIT_FACTOR = 4
MIN_SLEEP_S = 0.02
JOIN = "\n"

# KEYS[1]: burst set, KEYS[2]: lead record, KEYS[3..]: coalesced marks of the absorbed.
# ARGV[1]: lead seq, ARGV[2]: ttl, ARGV[3]: lead record, ARGV[4]: lead event id,
# ARGV[5..]: the absorbed members (exact set members).
_CLAIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1])
for i = 5, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('SET', KEYS[i - 2], ARGV[4], 'EX', ARGV[2])
end
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2])
return #ARGV - 4
"""
_CLAIM_SCRIPT = LuaScript(_CLAIM)


def pending_entry(msg: InboundMessage, now: float | None = None, payload_json: str = "") -> str:
    """The set member intake stores for `msg` (`payload_json`: its `to_json()` as JSON text,
    when the caller has it already); "" for what is never coalesced."""
    if msg.kind is not MessageKind.TEXT or msg.placeholder or not msg.text.strip():
        # Media ("[语音]", "[图片]") are turns of their own: a voice message is transcribed
        # and a picture shown in its own turn, never swallowed into a typed one's text.
        return ""
    at = time.time() if now is None else now
    body = payload_json or json.dumps(msg.to_json(), ensure_ascii=False)
    return f'{{"at": {json.dumps(at)}, "msg": {body}}}'


def joined(lead: InboundMessage, absorbed: list[InboundMessage]) -> InboundMessage:
    """The lead message carrying the whole burst's text (what the agent answers)."""
    if not absorbed:
        return lead
    return dataclasses.replace(lead, text=JOIN.join([lead.text, *(m.text for m in absorbed)]))


def look(pipe: Pipeline, msg: InboundMessage, seq: int) -> None:
    """Queue on `pipe` everything `take`'s first look needs (all reads: what is not needed
    costs nothing but its bytes). The turn sends them with its lock's `SET NX`, after which
    Redis runs them: they see what the conversation's previous turn wrote."""
    key = keys.burst(msg.conversation_key)
    pipe.get(keys.burst_lead(msg))
    pipe.exists(keys.coalesced(msg))
    pipe.zrangebyscore(key, seq, seq)
    pipe.zrangebyscore(key, seq + 1, "+inf", withscores=True)


async def take(
    redis: aioredis.Redis,
    msg: InboundMessage,
    seq: int,
    window_s: float,
    *,
    looked: Sequence[Any] | None = None,
    clock: Callable[[], float] = time.time,
) -> list[InboundMessage] | None:
    """The messages `msg`'s turn answers besides itself; None when `msg` was absorbed.
    `looked`: the replies of `look`, when the caller read them under the lock already."""
    key = keys.burst(msg.conversation_key)
    if looked is None:
        async with redis.pipeline(transaction=False) as pipe:
            look(pipe, msg, seq)
            looked = await pipe.execute()
    record, absorbed, own, after = looked
    if record is not None:
        return [InboundMessage.from_json(m) for m in json.loads(record)]  # a redelivered lead
    if absorbed:
        return None
    if seq <= 0:
        return []
    if (
        window_s <= 0
        or msg.kind is not MessageKind.TEXT
        or msg.placeholder  # answered politely: what follows gets turns of its own
        or is_reset_text(msg.text)
    ):
        await redis.zremrangebyscore(key, seq, seq)
        return []
    arrived = float(json.loads(own[0])["at"]) if own else clock()
    deadline = arrived + MAX_WAIT_FACTOR * window_s
    entries: Any = after
    while True:
        if entries is None:
            entries = await redis.zrangebyscore(key, seq + 1, "+inf", withscores=True)
        members, messages, last = _run_after(entries, msg, seq)
        entries = None
        now = clock()
        quiet_at = max(arrived, last) + window_s
        if now >= quiet_at or now >= deadline:
            break
        # Nothing can end the window before `quiet_at`: sleep until then and look again
        # (a follow-up that arrived meanwhile moves it). One read per follow-up, not a poll.
        await asyncio.sleep(max(MIN_SLEEP_S, min(quiet_at - now, deadline - now)))
    lead_record = json.dumps([m.to_json() for m in messages], ensure_ascii=False)
    await _CLAIM_SCRIPT(
        redis,
        (key, keys.burst_lead(msg), *(keys.coalesced(m) for m in messages)),
        (seq, keys.BURST_RECORD_TTL_S, lead_record, msg.event_id, *members),
    )
    if messages:
        log.info(
            "coalesced %d messages into %s %s %s",
            len(messages),
            msg.platform,
            msg.app,
            msg.event_id,
        )
    return messages


def _run_after(
    entries: Any, lead: InboundMessage, seq: int
) -> tuple[list[bytes], list[InboundMessage], float]:
    """Of the pending `entries` after `seq` (member, score), those that may join its turn,
    and the last arrival."""
    members: list[bytes] = []
    messages: list[InboundMessage] = []
    last = 0.0
    expected = seq + 1
    for member, score in entries:
        if int(score) != expected:
            break  # a gap: an event, or a message that already had its own turn
        data = json.loads(member)
        candidate = InboundMessage.from_json(data["msg"])
        if (
            candidate.sender_id != lead.sender_id
            or candidate.kind is not MessageKind.TEXT
            or candidate.placeholder  # media: a turn of its own
            or is_reset_text(candidate.text)  # "重新开始" is a turn of its own
        ):
            break
        members.append(member)
        messages.append(candidate)
        last = max(last, float(data["at"]))
        expected += 1
    return members, messages, last
