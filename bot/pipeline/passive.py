"""Passive replies: the webhook request waits a few seconds for the worker's answer.

Used by platforms whose webhook answer can carry the reply (WeChat Official Account, README
docs/protocols/wechat-mp.md#deadline-retries-and-dedupe of the protocol notes): an adapter opts in
with ``passive_wait_s > 0`` and ``render_passive(message, text, request) -> bytes | None``.
The architecture allows the web process this one wait (up to about 4.5 s) for an answer that
is already being computed.

Exactly one answer reaches the user, passive or active (the platform's send API), never both
and never none. Per message, in Redis (``{platform}:{app}:{event_id}`` suffix):

* ``passive:waiting:`` how many webhook requests wait right now (short TTL, a crash frees it);
* ``passive:claim:``   set once, by the worker, to ``passive`` or ``active``;
* ``passive:box:``     the list the worker pushes the passive text to, and waiters BLPOP;
* ``passive:tries:``   INCR per request (the platform's first try and its retries).

The worker (`offer`) and a waiter giving up (`_GIVE_UP`) are single Lua scripts, so the
handoff has no gap: either the worker saw a waiter and pushed the text, which the waiter then
takes (even in the instant it gives up), or the waiter had already left and the worker claims
``active`` and uses the send API. A retry of the same message never starts a second turn
(intake deduplicates it); it only waits again for the same answer.

When a wait ends empty:

* on the last try the platform makes (``tries``, 3 for WeChat) or when the worker already
  claimed ``active``: answer the adapter's normal final body (``success``) at once, and the
  answer goes out through the send API when ready;
* on an earlier try: keep the connection open ``HOLD_EXTRA_S`` longer, so that WeChat (which
  hangs up at 5 s) gives up on it and retries rather than read a final answer, then answer
  the final body (if the platform is somehow still listening it just stops retrying and the
  answer goes through the send API: still exactly one answer).

Deferred answers: an account that may not use the send API (WeChat MP without 客服消息
permission, errcode 48001) keeps the answers that missed their passive reply in
``passive:pending:{platform}:{app}:{user}`` (adapters/wechat_mp/limits.py writes it). `offer`
puts them, each under a one-line notice quoting its question, in front of the next passive
reply to that user, as many as fit in ``MAX_PASSIVE_BYTES``; when not even the oldest fits
together with the new answer, the passive reply carries the oldest and the new answer takes
its place at the end of the list. The same Lua script claims ``passive`` and trims the list,
so a deferred answer is delivered once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import TypeGuard, cast

import redis.asyncio as aioredis

from adapters.base import Finishes, PassiveReplies, Sender, has
from bot import keys
from bot.domain import InboundMessage, Reply
from bot.lua import LuaScript

log = logging.getLogger(__name__)

HOLD_EXTRA_S = 1.0
_BLPOP_SLICE_S = 1.0  # below the web client's 5 s socket timeout
MAX_PASSIVE_BYTES = 2048  # one WeChat passive text (docs/protocols/wechat-mp.md#passive-text-reply)
NOTICE = "您之前的问题：“{question}”的回复如下："
QUESTION_CHARS = 20  # how much of the question a notice quotes (as the MP adapter's own)
NOTICE_NO_QUESTION = "您之前的消息的回复如下："

PASSIVE = "passive"
ACTIVE = "active"
# Pushed once per waiter when the worker claims ``active``: wakes them to answer at once.
_WAKE = "\x00active"

# KEYS: waiting, claim, box, tries. ARGV: state ttl, waiting ttl.
# Returns {try number, claim or "", text taken from the box or ""}.
_REGISTER = """
local tries = redis.call('INCR', KEYS[4])
redis.call('EXPIRE', KEYS[4], ARGV[1])
local claim = redis.call('GET', KEYS[2])
if claim then
  return {tries, claim, redis.call('LPOP', KEYS[3]) or ''}
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {tries, '', ''}
"""
_REGISTER_SCRIPT = LuaScript(_REGISTER)

# KEYS: waiting, box. Returns a text pushed in the meantime, or "".
_GIVE_UP = """
local left = redis.call('DECR', KEYS[1])
if left <= 0 then redis.call('DEL', KEYS[1]) end
return redis.call('LPOP', KEYS[2]) or ''
"""
_GIVE_UP_SCRIPT = LuaScript(_GIVE_UP)

# KEYS: waiting, claim, box, pending. ARGV: "1" when the text fits a passive reply, text, ttl,
# wake, how many deferred answers the text carries, a deferred item to append (or ""),
# pending ttl.
_OFFER = """
local claim = redis.call('GET', KEYS[2])
if claim then return claim end
if ARGV[1] == '1' and tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
  redis.call('SET', KEYS[2], 'passive', 'EX', ARGV[3])
  redis.call('RPUSH', KEYS[3], ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  if tonumber(ARGV[5]) > 0 then redis.call('LTRIM', KEYS[4], ARGV[5], -1) end
  if ARGV[6] ~= '' then
    redis.call('RPUSH', KEYS[4], ARGV[6])
    redis.call('EXPIRE', KEYS[4], ARGV[7])
  end
  return 'passive'
end
redis.call('SET', KEYS[2], 'active', 'EX', ARGV[3])
local waiters = tonumber(redis.call('GET', KEYS[1]) or '0')
for _ = 1, waiters do redis.call('RPUSH', KEYS[3], ARGV[4]) end
if waiters > 0 then redis.call('EXPIRE', KEYS[3], ARGV[3]) end
return 'active'
"""
_OFFER_SCRIPT = LuaScript(_OFFER)


def pending_key(msg: InboundMessage) -> str:
    """The deferred answers waiting for `msg`'s sender (see the module docstring)."""
    return keys.passive_pending(msg.platform.value, msg.app, msg.sender_id)


def _fits(text: str) -> bool:
    return len(text.encode("utf-8")) <= MAX_PASSIVE_BYTES


def _block(item: dict[str, str]) -> str:
    question = item.get("q", "").strip()
    notice = NOTICE.format(question=question) if question else NOTICE_NO_QUESTION
    return f"{notice}\n{item.get('text', '')}"


def compose(items: list[dict[str, str]], text: str, question: str) -> tuple[str, int, str]:
    """The passive text carrying deferred `items` and the new `text`.

    Returns (text, how many items it carries, a deferred item for the new text or "").
    """
    blocks: list[str] = []
    for item in items:
        if not _fits("\n\n".join([*blocks, _block(item), text])):
            break
        blocks.append(_block(item))
    if blocks:
        return "\n\n".join([*blocks, text]), len(blocks), ""
    if items and _fits(_block(items[0])):
        # The oldest goes now; the new answer waits for the next message in its place.
        carry = json.dumps({"q": question, "text": text}, ensure_ascii=False)
        return _block(items[0]), 1, carry
    return text, 0, ""


async def _pending(redis: aioredis.Redis, key: str) -> list[dict[str, str]]:
    items = []
    for raw in await redis.lrange(key, 0, -1):  # type: ignore[misc]
        try:
            item = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            item = None
        items.append(item if isinstance(item, dict) else {"text": ""})
    return items


def _str(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class WaitResult:
    text: str | None  # the answer for a passive reply, or None
    attempt: int  # 1 for the platform's first try, 2 and 3 for its retries
    hold: bool  # True: an earlier try timed out; keep the connection until the platform leaves


async def wait(
    redis: aioredis.Redis, msg: InboundMessage, *, wait_s: float, tries: int
) -> WaitResult:
    """Wait up to `wait_s` for the worker's passive text for `msg` (webhook side)."""
    waiting, claim_key, box, tries_key = keys.passive_keys(msg)
    attempt_raw, claim_raw, taken_raw = await _REGISTER_SCRIPT(
        redis,
        (waiting, claim_key, box, tries_key),
        (keys.PASSIVE_STATE_TTL_S, keys.PASSIVE_WAITING_TTL_S),
    )
    attempt, claim, taken = int(attempt_raw), _str(claim_raw), _str(taken_raw)
    if claim:
        # The worker already decided: a text left in the box (its waiter vanished) is ours.
        return WaitResult(taken if claim == PASSIVE and taken else None, attempt, False)
    woken = False
    deadline = time.monotonic() + wait_s
    text: str | None = None
    try:
        while text is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            popped = await redis.blpop([box], timeout=min(left, _BLPOP_SLICE_S))  # type: ignore[misc]
            if popped:
                if _str(popped[1]) == _WAKE:
                    woken = True  # the worker sends through the platform's API
                    break
                text = _str(popped[1])
    finally:
        # Shielded: a cancelled request must still leave the waiting count right.
        late = _str(await asyncio.shield(_GIVE_UP_SCRIPT(redis, (waiting, box), ())))
    if text is None and late and late != _WAKE:
        text = late
    if text is None:
        claim = _str(await redis.get(claim_key) or b"")
        hold = attempt < tries and claim != ACTIVE and not woken
        log.info(
            "passive wait for %s %s %s ended empty (try %d%s)",
            msg.platform,
            msg.app,
            msg.event_id,
            attempt,
            ", holding" if hold else "",
        )
        return WaitResult(None, attempt, hold)
    return WaitResult(text, attempt, False)


async def offer(redis: aioredis.Redis, msg: InboundMessage, text: str | None) -> str:
    """Worker side: hand `text` to a waiting webhook request if one waits now.

    `text` is None when the answer cannot be one passive reply (several parts). Returns
    ``passive`` (the text went to the waiting request: do not send it) or ``active`` (send it
    through the platform's API). The first decision for a message sticks, so a redelivered
    task finds the same answer. Waiters of an ``active`` message are woken to answer at once;
    `text=None` is also how a turn that answers nothing releases them.
    """
    waiting, claim_key, box, _tries = keys.passive_keys(msg)
    pending = pending_key(msg)
    fits = "1" if text is not None else "0"
    carried, carry = 0, ""
    if text is not None:
        items = await _pending(redis, pending)
        if items:
            text, carried, carry = compose(items, text, msg.question[:QUESTION_CHARS])
    result = _str(
        await _OFFER_SCRIPT(
            redis,
            (waiting, claim_key, box, pending),
            (
                fits,
                text or "",
                keys.PASSIVE_STATE_TTL_S,
                _WAKE,
                carried,
                carry,
                keys.PASSIVE_PENDING_TTL_S,
            ),
        )
    )
    if result == PASSIVE and carried:
        log.info(
            "passive reply to %s %s carries %d deferred answer(s)%s",
            msg.platform,
            msg.app,
            carried,
            ", the new one is deferred" if carry else "",
        )
    return result


def waits_passively(sender: Sender) -> TypeGuard[PassiveReplies]:
    """Whether webhook requests of `sender`'s platform wait to carry the answer themselves."""
    return has(sender, PassiveReplies) and cast(PassiveReplies, sender).passive_wait_s > 0


async def release(redis: aioredis.Redis, sender: Sender, msg: InboundMessage) -> None:
    """Tell whoever waits for an answer to `msg` that none comes (MP webhook, web chat)."""
    if waits_passively(sender):
        await offer(redis, msg, None)
    if isinstance(sender, Finishes):
        await sender.finish(Reply.to(msg, ""))
