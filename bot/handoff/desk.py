"""What a human agent does to a conversation, for the admin API and the console alike.

    take_over         the bot stops answering; the conversation waits for a person
    claim             one agent answers it (several agents never answer one customer at once)
    send_to_customer  a reply recorded and sent through the conversation's own platform
    release           back to the bot, with the HANDOFF_RETURNED_TEXT notice

A reply goes out from the web process at once, through the sender the worker uses
(`wiring.sender_for`), addressed like the customer's latest message (kept in Redis by
bot/handoff/flow.py), stored as an outbound Message with backend "human" plus a Delivery
row per part. A failed part stops the reply and says why; the agent sees it and retries.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot import keys, live, wiring
from bot.db.models import Conversation, HandoffClaim
from bot.domain import InboundMessage, Platform, Reply
from bot.errors import BotError
from bot.handoff import flow, state, views
from bot.settings import Settings

log = logging.getLogger(__name__)

SEND_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=5)


@dataclass
class Sent:
    """What `send_to_customer` did: the stored message, the parts out, the error that stopped it."""

    message_id: int
    parts: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


@dataclass(frozen=True)
class Desk:
    """The parts a human agent's actions need: settings, Redis and the database."""

    settings: Settings
    redis: aioredis.Redis
    engine: Engine

    async def get(self, conv_id: int) -> Conversation | None:
        return await asyncio.to_thread(views.get, self.engine, conv_id)

    async def take_over(self, conv_id: int, actor: str, reason: str = "") -> bool:
        """Hand the conversation to the humans; False when a human already holds it."""
        return await asyncio.to_thread(
            state.transition,
            self.engine,
            conv_id,
            state.HUMAN,
            "admin",
            reason=reason,
            actor=actor,
        )

    async def claim(self, conv_id: int, agent: str, *, transfer: bool = False) -> str:
        """Make `agent` the one who answers; returns who holds the claim afterwards.

        Without `transfer` an existing claim of another agent stands (the caller sees
        their name); with it the claim moves (an admin reassigning, an agent passing on).
        """
        return await asyncio.to_thread(_claim, self.engine, conv_id, agent, transfer)

    async def claimed_by(self, conv_ids: list[int]) -> dict[int, str]:
        return await asyncio.to_thread(claims_of, self.engine, conv_ids)

    async def claimant(self, conv_id: int) -> str:
        """Who has claimed one conversation ("" for nobody)."""
        return (await self.claimed_by([conv_id])).get(conv_id, "")

    async def send_to_customer(
        self, conv: Conversation, text: str, agent: str, backend: str = state.HUMAN_BACKEND
    ) -> Sent | str:
        """Record and send `text` to the conversation's customer; a str says why it cannot."""
        address = await self._address(conv)
        try:
            sender = wiring.sender_for(address.platform, address.app, self.settings, self.redis)
        except KeyError:
            return f"{conv.platform}/{conv.app} is not configured on this server"
        row = await asyncio.to_thread(views.record_reply, self.engine, conv, text, agent, backend)
        await live.changed(self.redis, conv.id or 0)
        in_reply_to = (
            f"inbox:{conv.external_id}" if address.platform is Platform.WEB else f"human:{row.id}"
        )
        reply = Reply(
            platform=address.platform,
            app=address.app,
            conversation_id=address.conversation_id,
            recipient_id=address.sender_id,
            text=text,
            in_reply_to=in_reply_to,
            is_group=address.is_group,
            route=address.route,
        )
        sent = Sent(row.id or 0)
        async with aiohttp.ClientSession(timeout=SEND_TIMEOUT) as http:
            for index, part in enumerate(sender.split(text)):
                try:
                    platform_id = await sender.send(reply.with_text(part), http)
                except BotError as exc:
                    await asyncio.to_thread(
                        views.delivery, self.engine, row, index, "failed", "", str(exc)
                    )
                    log.error("message %d to conversation %d failed: %s", row.id, conv.id, exc)
                    sent.error = str(exc)
                    return sent
                await asyncio.to_thread(
                    views.delivery, self.engine, row, index, "sent", platform_id, ""
                )
                sent.parts.append({"part": index, "platform_msg_id": platform_id})
        return sent

    async def release(self, conv: Conversation, actor: str) -> str | None:
        """Back to the bot; the notice's outcome ("sent", "off", "failed: …"), None if the
        bot already held it."""
        moved = await asyncio.to_thread(
            state.transition, self.engine, conv.id or 0, state.BOT, "release_admin", actor=actor
        )
        if not moved:
            return None
        await self._back_to_bot(conv)
        # The customer learns the bot is back (HANDOFF_RETURNED_TEXT); the release stands
        # whether or not that notice gets through.
        text = self.settings.handoff.returned_text.strip()
        if not text:
            return "off"
        sent = await self.send_to_customer(conv, text, actor, backend=flow.RETURNED_BACKEND)
        error = sent if isinstance(sent, str) else sent.error
        return f"failed: {error}" if error else "sent"

    async def _back_to_bot(self, conv: Conversation) -> None:
        """A platform with its own servicers (微信客服) learns the bot answers again."""
        try:
            sender = wiring.sender_for(Platform(conv.platform), conv.app, self.settings, self.redis)
        except (KeyError, ValueError):
            return
        await flow.back_to_bot(self.redis, conv.id or 0, None, sender)

    async def _address(self, conv: Conversation) -> InboundMessage:
        """The customer's latest message (its platform metadata), else one rebuilt from the DB."""
        raw = await self.redis.get(keys.handoff_address(conv.id or 0))
        if raw:
            return InboundMessage.from_json(json.loads(raw))
        sender_id = await asyncio.to_thread(views.last_sender, self.engine, conv.id or 0)
        return InboundMessage(
            platform=Platform(conv.platform),
            app=conv.app,
            event_id="",
            conversation_id=conv.external_id,
            sender_id=sender_id or conv.external_id,
            text="",
            is_group=conv.is_group,
        )


def _claim(engine: Engine, conv_id: int, agent: str, transfer: bool) -> str:
    with Session(engine) as session:
        found = session.get(HandoffClaim, conv_id)
        if found is not None:
            if found.agent == agent or not transfer:
                return found.agent
            found.agent, found.claimed_at = agent, datetime.now(UTC)
            session.add(found)
            session.commit()
            return agent
        session.add(HandoffClaim(conversation_id=conv_id, agent=agent))
        try:
            session.commit()
        except IntegrityError:  # another agent claimed it at the same moment
            session.rollback()
            winner = session.get(HandoffClaim, conv_id)
            return winner.agent if winner is not None else ""
    log.info("conversation %d claimed by %s", conv_id, agent)
    return agent


def claims_of(engine: Engine, conv_ids: list[int]) -> dict[int, str]:
    if not conv_ids:
        return {}
    with Session(engine) as session:
        rows = session.exec(
            select(HandoffClaim).where(col(HandoffClaim.conversation_id).in_(conv_ids))
        )
        return {row.conversation_id: row.agent for row in rows}
