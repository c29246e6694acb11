"""What every console page module needs: the audit entry of an operator's action."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from bot.admin.common import engine_of
from bot.console import audit
from bot.console.guard import operator
from bot.web.identity import client_address


async def audit_action(
    request: web.Request,
    action: str,
    target: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    """Record `action` on `target` by the request's operator, from its address."""
    await asyncio.to_thread(
        audit.record,
        engine_of(request),
        operator(request).name,
        action,
        target,
        before=before,
        after=after,
        address=client_address(request),
    )
