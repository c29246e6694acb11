"""Human handoff in the pipeline: when the bot hands a conversation to a person, and back.

The states, their race-safe transitions and the event log are in bot/handoff/state.py;
the trigger rules in bot/handoff/rules.py. The pipeline calls three hooks:

- `before_turn`, after the inbound message is stored: while a human holds the
  conversation the bot stays silent (the message is forwarded to the agents' group,
  rate-limited; while nobody has claimed it yet the customer hears their place in the
  queue, at most once a minute: bot/handoff/waiting.py), unless the customer ends it
  ("结束人工") or the humans were idle longer than HANDOFF_IDLE_RELEASE_S. An explicit
  request (转人工 …) hands over here, without a model call, and the customer gets the
  handoff notice (their place in the queue) instead of an answer.
- `after_answer`: the model asked for a person (`Answer.handoff_reason`), the customer is
  angry, repeats themselves, or retrieval stayed below HANDOFF_LOW_CONFIDENCE for N turns.
  Anger keeps the answer and adds the notice; the others send only the notice (a
  low-confidence or repeated answer did not help).

The answer of a turn that handed over is kept in Redis (`keys.handoff_turn`), so a retried task
sends the same notice rather than finding the conversation already human and staying
silent. Effects after a move: the notice to the agents' group (bot/handoff/notify.py) and, for
微信客服, kf/service_state/trans in `after_delivery` (once the notice is out); a failed
effect is logged, the handoff stands.

Database calls run in the `Database`'s threads: the worker's event loop never waits on them.
The repeat trigger's read, made after every answer, goes through the caller's `recent`
reader when it gives one (the worker's turn: asyncpg on its loop, bot/db/pg.py).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import aiohttp
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from adapters.base import HandsToHuman, Sender
from bot import keys
from bot.agent.agent import Answer
from bot.db.engine import Database
from bot.domain import InboundMessage, MessageKind, Reply
from bot.handoff import notify, waiting
from bot.handoff import rules as handoff_rules
from bot.handoff.state import (
    BOT,
    HUMAN,
    clip,
    last_human_activity,
    recent_customer_texts,
    state_of,
    summary_lines,
    transcript_link,
    transition,
)
from bot.pipeline import passive
from bot.settings import HandoffSettings, Settings

log = logging.getLogger(__name__)

# Answers that are not the bot trying to help (a rate-limit notice, "重新开始" confirmed):
# an abusive user's spam must not reach the humans through the anger or repeat rules.
NOT_A_TURN = frozenset({"ratelimit", "command"})

# Writes of the caller's whose replies it does not need (a console signal, the answer
# cache), queued in front of a hook's first Redis round trip: one round trip fewer a turn.
Also = Callable[[Pipeline], object] | None
# Reads the customer's last texts: (conversation id, how many) -> oldest first.
RecentTexts = Callable[[int, int], Awaitable[list[str]]]


async def _send(redis: aioredis.Redis, also: Also) -> None:
    """`also`'s writes on their own, for a hook that makes no round trip of its own."""
    if also is not None:
        async with redis.pipeline(transaction=False) as pipe:
            also(pipe)
            await pipe.execute()


@dataclass(frozen=True, slots=True)
class Gate:
    """What `before_turn` decided: stay silent, answer with this, or (neither) go on."""

    silent: bool = False
    answer: Answer | None = None
    # Said before this turn's answer: the conversation just idled back to the bot.
    notice: str = ""


RETURNED_BACKEND = "handoff"  # Message.backend of the "back to the bot" notice


def with_notice(answer: Answer, notice: str) -> Answer:
    """`answer` with `notice` in front (one message: the customer reads them in order)."""
    if not notice:
        return answer
    return replace(answer, text=f"{notice}\n\n{answer.text}" if answer.text else notice)


# --- the pipeline's hooks ----------------------------------------------------------------


async def before_turn(
    msg: InboundMessage,
    conversation_id: int,
    *,
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    sender: Sender,
    settings: Settings,
    db: Database,
    state: str | None = None,
    also: Also = None,
) -> Gate:
    """Decide, before the agent runs, whether the bot answers this message at all.

    `state`: the conversation's handoff state when the caller has just read it (the turn
    stores the message in the same session); otherwise it is read here. `also`: the
    caller's writes, sent first in this hook's first round trip.
    """
    cfg = settings.handoff
    if not cfg.active:
        await _send(redis, also)
        return Gate()
    async with redis.pipeline(transaction=False) as pipe:  # one round trip for the three
        if also is not None:
            also(pipe)
        pipe.get(keys.handoff_turn(msg))
        pipe.set(
            keys.handoff_address(conversation_id),
            json.dumps(msg.to_json()),
            ex=keys.HANDOFF_ADDRESS_TTL_S,
        )
        pipe.get(keys.handoff_returned(msg))
        cached, _, returned_before = (await pipe.execute())[-3:]
    if cached:
        return Gate(answer=Answer.from_json(cached))
    returned = _text(returned_before)  # set by an earlier try of this message
    text = msg.text if msg.kind is MessageKind.TEXT else ""
    if state is None:
        state = await db.run(state_of, db.engine, conversation_id)
    if state == HUMAN:
        if text and handoff_rules.wants_release(text, handoff_rules.keywords(cfg.release_keywords)):
            await release(db, conversation_id, "release_command", "customer", redis, msg, sender)
            return await _remember(redis, msg, Answer(text=cfg.release_text, backend="handoff"))
        if not await _idle(db, conversation_id, cfg):
            await _forward(redis, http, settings, msg, conversation_id)
            ack = await waiting.acknowledgement(
                conversation_id, redis=redis, sender=sender, cfg=cfg, db=db
            )
            if ack is not None:  # still in the queue: never silence
                return await _remember(redis, msg, ack)
            await _close_silently(redis, sender, msg)
            return Gate(silent=True)
        # The humans went quiet: the bot answers this message, after saying it is back.
        await release(db, conversation_id, "idle_timeout", "bot", redis, msg, sender)
        if cfg.returned_text.strip():
            returned = cfg.returned_text.strip()
            await redis.set(keys.handoff_returned(msg), returned, ex=keys.HANDOFF_TURN_TTL_S)
    if text and handoff_rules.wants_human(text, handoff_rules.keywords(cfg.keywords)):
        await hand_over(
            msg,
            conversation_id,
            "user_request",
            clip(text, 200),
            redis=redis,
            http=http,
            settings=settings,
            db=db,
        )
        told = await waiting.handed_notice(db, conversation_id, cfg)
        notice = Answer(text=told, backend="handoff", handoff_reason="user_request")
        return await _remember(redis, msg, notice)
    return Gate(notice=returned)


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else value or ""


async def after_answer(
    msg: InboundMessage,
    conversation_id: int,
    answer: Answer,
    *,
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    settings: Settings,
    db: Database,
    also: Also = None,
    recent: RecentTexts | None = None,
) -> Answer:
    """Hand over when the answered turn shows the bot is not helping; returns what to send.
    `also`: the caller's writes, sent first in this hook's first round trip; `recent`: how
    the repeat trigger reads the customer's last texts (default: `db`'s threads)."""
    cfg = settings.handoff
    if not cfg.active or msg.kind is not MessageKind.TEXT or answer.backend in NOT_A_TURN:
        await _send(redis, also)
        return answer
    if recent is None:
        recent = functools.partial(_recent_texts, db)
    trigger, reason = await _post_answer_trigger(
        recent, redis, msg, conversation_id, answer, cfg, also
    )
    if not trigger:
        return answer
    moved = await hand_over(
        msg,
        conversation_id,
        trigger,
        reason,
        redis=redis,
        http=http,
        settings=settings,
        db=db,
    )
    if not moved:
        return answer  # an agent took it meanwhile: this answer is still the bot's to give
    told = await waiting.handed_notice(db, conversation_id, cfg)
    text = f"{answer.text}\n\n{told}" if trigger == "anger" else told
    final = Answer(
        text=text,
        sources=answer.sources if trigger == "anger" else (),
        backend=answer.backend or "handoff",
        degraded=answer.degraded,
        handoff_reason=reason or trigger,
        confidence=answer.confidence,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
    )
    gate = await _remember(redis, msg, final)
    return gate.answer or final


async def _recent_texts(db: Database, conversation_id: int, limit: int) -> list[str]:
    return await db.autocommit(
        lambda session: recent_customer_texts(session, conversation_id, limit)
    )


async def _post_answer_trigger(
    recent: RecentTexts,
    redis: aioredis.Redis,
    msg: InboundMessage,
    conversation_id: int,
    answer: Answer,
    cfg: HandoffSettings,
    also: Also = None,
) -> tuple[str, str]:
    """The first trigger that fires, in order model, anger, repeat, low confidence."""
    low = await _count_low_confidence(redis, conversation_id, answer, cfg, also)
    if answer.handoff_reason:
        return "model", clip(answer.handoff_reason, 200)
    anger = handoff_rules.keywords(cfg.anger_keywords) or handoff_rules.ANGER_DEFAULTS
    if handoff_rules.is_angry(msg.text, anger):
        return "anger", clip(msg.text, 200)
    texts = await recent(conversation_id, cfg.repeat_count)
    if handoff_rules.is_repeat(texts, cfg.repeat_count):
        return "repeat", f"重复发送 {cfg.repeat_count} 次：{clip(msg.text, 100)}"
    if low >= cfg.low_confidence_turns:
        return "low_confidence", f"连续 {low} 轮检索置信度低于 {cfg.low_confidence:.2f}"
    return "", ""


async def _count_low_confidence(
    redis: aioredis.Redis,
    conversation_id: int,
    answer: Answer,
    cfg: HandoffSettings,
    also: Also = None,
) -> int:
    """Consecutive answered turns whose best retrieval score was below the threshold."""
    key = keys.handoff_low_confidence(conversation_id)
    async with redis.pipeline(transaction=False) as pipe:  # one round trip, `also` first
        if also is not None:
            also(pipe)
        if answer.confidence is None:
            pipe.get(key)  # nothing was searched (a rule, a welcome): no change
            return int((await pipe.execute())[-1] or 0)
        if answer.confidence >= cfg.low_confidence:
            pipe.delete(key)
            await pipe.execute()
            return 0
        pipe.incr(key)
        pipe.expire(key, keys.HANDOFF_TURN_TTL_S)
        count, _ = (await pipe.execute())[-2:]
    return int(count)


async def _remember(redis: aioredis.Redis, msg: InboundMessage, answer: Answer) -> Gate:
    await redis.set(keys.handoff_turn(msg), answer.to_json(), ex=keys.HANDOFF_TURN_TTL_S)
    return Gate(answer=answer)


async def _idle(db: Database, conversation_id: int, cfg: HandoffSettings) -> bool:
    last = await db.run(last_human_activity, db.engine, conversation_id)
    return last is not None and datetime.now(UTC) - last > timedelta(seconds=cfg.idle_release_s)


async def _close_silently(redis: aioredis.Redis, sender: Sender, msg: InboundMessage) -> None:
    """End what waits for an answer that will not come (web chat request, MP passive reply)."""
    await passive.release(redis, sender, msg)


# --- effects ------------------------------------------------------------------------------


async def hand_over(
    msg: InboundMessage,
    conversation_id: int,
    trigger: str,
    reason: str,
    *,
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    settings: Settings,
    db: Database,
    actor: str = "bot",
) -> bool:
    """bot → human, to an online agent in turn if any, then tell the agents and (微信客服)
    transfer the session."""
    moved = await db.run(
        transition, db.engine, conversation_id, HUMAN, trigger, reason=reason, actor=actor
    )
    if not moved:
        return False
    await redis.delete(keys.handoff_low_confidence(conversation_id))
    agent = await waiting.assign(db, redis, conversation_id)
    lines = await db.run(summary_lines, db.engine, conversation_id)
    notice = notify.Notice(
        title="客户需要人工客服",
        lines=(
            f"**平台**：{msg.platform.value}（{msg.app}）",
            f"**客户**：{msg.sender_id or msg.conversation_id}",
            f"**原因**：{trigger}" + (f"（{reason}）" if reason else ""),
            f"**接待人**：{agent or '未分配（无人在线），请在控制台认领'}",
            "**最近对话**：",
            *lines,
            f"[查看完整对话]({transcript_link(settings, conversation_id, now=time.time())})",
        ),
    )
    await post_notice(http, settings, notice)
    # A platform with its own servicers (微信客服) gets the chat after the notice is out:
    # WeCom refuses kf/send_msg once the session has left the bot (`after_delivery`).
    await redis.set(keys.handoff_transfer(msg), "1", ex=keys.HANDOFF_TURN_TTL_S)
    return True


async def after_delivery(
    msg: InboundMessage, *, redis: aioredis.Redis, http: aiohttp.ClientSession, sender: Sender
) -> None:
    """Once the notice is out, hand the chat to the platform's own servicers (微信客服)."""
    key = keys.handoff_transfer(msg)
    if not isinstance(sender, HandsToHuman) or not await redis.get(key):
        return
    try:
        await sender.hand_to_human(Reply.to(msg, ""), http)
    except Exception as exc:  # the handoff stands; the agents were told in the group
        log.error("%s transfer of %s failed: %s", msg.platform, msg.sender_id, exc)
    await redis.delete(key)


async def post_notice(
    http: aiohttp.ClientSession, settings: Settings, notice: notify.Notice
) -> bool:
    """Post to the agents' group when one is configured; False (and a log) on failure."""
    cfg = settings.handoff
    if not cfg.notify_kind:
        log.info("handoff notice not posted (HANDOFF_NOTIFY_KIND unset): %s", notice.title)
        return False
    try:
        await notify.send(
            http,
            cfg.notify_kind.strip().lower(),
            cfg.notify_url,
            cfg.notify_secret.get_secret_value(),
            notice,
            now=time.time(),
            timeout_s=cfg.notify_timeout_s,
        )
    except notify.NotifyError as exc:
        log.error("handoff notice to the %s group failed: %s", cfg.notify_kind, exc)
        return False
    return True


async def _forward(
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    settings: Settings,
    msg: InboundMessage,
    conversation_id: int,
) -> None:
    """Tell the group a held customer wrote again, at most once per HANDOFF_FORWARD_EVERY_S."""
    every = settings.handoff.forward_every_s
    if every <= 0 or not msg.text:
        return
    if not await redis.set(
        keys.handoff_forwarded(conversation_id), "1", nx=True, ex=max(1, int(every))
    ):
        return
    link = transcript_link(settings, conversation_id, now=time.time())
    notice = notify.Notice(
        title="人工会话有新消息",
        lines=(
            f"**客户**：{msg.sender_id or msg.conversation_id}（{msg.platform.value}）",
            f"> {clip(msg.text, 200)}",
            f"[查看完整对话]({link})",
        ),
    )
    await post_notice(http, settings, notice)


async def release(
    db: Database,
    conversation_id: int,
    trigger: str,
    actor: str,
    redis: aioredis.Redis,
    msg: InboundMessage | None,
    sender: Sender | None,
) -> bool:
    """human → bot (customer command, idle timeout, or an agent through the admin API)."""
    moved = await db.run(transition, db.engine, conversation_id, BOT, trigger, actor=actor)
    if moved:
        await back_to_bot(redis, conversation_id, msg, sender)
    return moved


async def back_to_bot(
    redis: aioredis.Redis,
    conversation_id: int,
    msg: InboundMessage | None,
    sender: Sender | None,
) -> None:
    """Tell a platform with its own servicers (微信客服) that the bot answers again."""
    if not isinstance(sender, HandsToHuman):
        return
    if msg is None:
        raw = await redis.get(keys.handoff_address(conversation_id))
        msg = InboundMessage.from_json(json.loads(raw)) if raw else None
    if msg is not None:
        await sender.back_to_bot(Reply.to(msg, ""))
