"""Signed web chat identities for tests that post to /api/chat as a named user.

The tests hold the server's settings, like `bot chat --user`, so they sign with its key
(bot/web/identity.py); the server still checks every signature.
"""

from __future__ import annotations

from typing import Any

from bot.web.app import SETTINGS
from bot.web.identity import sign_for


async def as_user(client: Any, user: str) -> dict[str, str]:
    """The `user` and `sig` fields (or query parameters) for `user` on this test client."""
    return {"user": user, "sig": await sign_for(client.app[SETTINGS], user)}
