"""The adapter contract: framework-neutral webhook values and the Adapter/Sender protocols."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from bot.domain import InboundMessage, Platform, Reply


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """One HTTP request as the adapter sees it; header names are lower-cased."""

    method: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """What to answer the platform, and the message to enqueue (None: handshake or ignored)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"
    message: InboundMessage | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


class Sender(Protocol):
    """Sends replies back through one platform app's API."""

    platform: Platform
    app: str

    def split(self, text: str) -> list[str]:
        """Cut a reply into the parts the platform accepts, in order."""
        ...

    async def send(self, reply: Reply, http: aiohttp.ClientSession) -> str:
        """Deliver one part; return the platform's message id ("" when it gives none)."""
        ...


class Adapter(Sender, Protocol):
    """A platform app that also receives webhooks. `handle` is pure: no I/O."""

    def handle(self, request: WebhookRequest, *, now: float) -> WebhookResult: ...
