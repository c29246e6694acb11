"""A customer waiting for a person: who gets the conversation, and what the customer is told.

- `assign`: a conversation just handed to the humans goes to the next online agent
  (bot/handoff/presence.py) as their claim; with nobody online it waits in the queue
  (bot/handoff/claims.py) for someone to claim it in the console, or
- `assign_backlog`: for the next agent who comes online: the queue, oldest first, is
  dealt out to the online agents in turn.
- `handed_notice`: the handoff notice says the customer's place in the queue
  (HANDOFF_NOTICE_TEXT, "{position}"), or HANDOFF_ASSIGNED_TEXT when an agent has it.
- `acknowledgement`: a message while still in the queue is answered with
  HANDOFF_WAITING_TEXT and the place, never met with silence, but at most once per
  HANDOFF_WAITING_EVERY_S per conversation (five lines typed in a row get one answer).
  The message itself is stored as always, for the agent.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
from sqlalchemy.engine import Engine

from adapters.base import HandsToHuman, Sender
from bot import keys
from bot.agent import trace as tracing
from bot.agent.agent import Answer
from bot.db.engine import Database
from bot.handoff import claims, presence
from bot.settings import HandoffSettings

log = logging.getLogger(__name__)

BACKEND = "handoff"  # Message.backend of what the handoff tells the customer


async def assign(db: Database, redis: aioredis.Redis, conv_id: int) -> str:
    """Give the conversation to the online agent whose turn it is; "" when it stays queued."""
    agent = await presence.next_online(redis, now=time.time())
    if not agent or not await db.run(claims.assign, db.engine, conv_id, agent):
        return ""
    log.info("conversation %d assigned to %s (online, in turn)", conv_id, agent)
    return agent


BACKLOG_MAX = 50  # conversations dealt out per agent coming online; the rest stay queued


async def assign_backlog(engine: Engine, redis: aioredis.Redis) -> list[tuple[int, str]]:
    """Deal the queue out to the online agents in turn: (conversation, agent) per claim made.
    Called when an agent comes online, so nobody waits for a claim while an agent is free."""
    made: list[tuple[int, str]] = []
    for conv_id in (await asyncio.to_thread(claims.queue, engine))[:BACKLOG_MAX]:
        agent = await presence.next_online(redis, now=time.time())
        if not agent:
            break
        if await asyncio.to_thread(claims.assign, engine, conv_id, agent):
            log.info("conversation %d assigned to %s (waiting, agent online)", conv_id, agent)
            made.append((conv_id, agent))
    return made


async def handed_notice(db: Database, conv_id: int, cfg: HandoffSettings) -> str:
    """What the customer reads when handed over: their place in the queue, or that an
    agent already has the conversation."""
    place = await db.run(claims.position, db.engine, conv_id)
    if place:
        return with_position(cfg.notice_text, place)
    holder: str = await db.run(claims.holder, db.engine, conv_id)
    # Not queued and nobody has it: it went back to the bot meanwhile; say the first place.
    return cfg.assigned_text if holder else with_position(cfg.notice_text, 1)


async def acknowledgement(
    conv_id: int,
    *,
    redis: aioredis.Redis,
    sender: Sender,
    cfg: HandoffSettings,
    db: Database,
) -> Answer | None:
    """The answer to a message written while the conversation waits in the queue; None when
    nothing is said (claimed, told a moment ago, switched off)."""
    text = cfg.waiting_text.strip()
    # 微信客服 moved the chat to WeCom's own servicers, who show their own queue.
    if not text or isinstance(sender, HandsToHuman):
        return None
    place = await db.run(claims.position, db.engine, conv_id)
    if place == 0:
        return None  # an agent has it: they see the message live
    every = max(1, round(cfg.waiting_every_s))
    if not await redis.set(keys.handoff_acknowledged(conv_id), "1", nx=True, ex=every):
        return None
    return Answer(text=with_position(text, place), backend=BACKEND, outcome=tracing.OTHER)


def with_position(text: str, place: int) -> str:
    """`text` with "{position}" filled in (replaced, not formatted: an operator's text may
    hold other braces)."""
    return text.replace("{position}", str(place))
