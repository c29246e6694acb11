"""The desk's team: the active accounts that answer customers (admins and agents), each with
their presence (bot/handoff/presence.py), for the inbox and the transfer form."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import redis.asyncio as aioredis
from sqlalchemy.engine import Engine

from bot.console import accounts
from bot.handoff import presence

DESK_ROLES = (accounts.ADMIN, accounts.AGENT)
_ORDER = {presence.ONLINE: 0, presence.AWAY: 1, presence.OFFLINE: 2}


@dataclass(frozen=True, slots=True)
class Member:
    """One account that may answer customers, and whether they are at the desk now."""

    name: str
    role: str
    status: str  # presence.ONLINE, AWAY or OFFLINE


async def members(engine: Engine, redis: aioredis.Redis, *, now: float) -> list[Member]:
    """Every active admin and agent, online first, then away, then offline, by name."""
    found = await asyncio.to_thread(accounts.all_accounts, engine)
    status = await presence.statuses(redis, now=now)
    team = [
        Member(a.username, a.role, status.get(a.username, presence.OFFLINE))
        for a in found
        if a.role in DESK_ROLES and not a.disabled
    ]
    return sorted(team, key=lambda m: (_ORDER[m.status], m.name))
