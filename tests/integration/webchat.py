"""Signed web chat identities for tests that post to /api/chat as a named user.

The tests hold the server's settings, like `bot chat --user`, so they sign with its key
(bot/web/identity.py); the server still checks every signature.
"""

from __future__ import annotations

import json
from typing import Any

from bot.web.app import SETTINGS
from bot.web.identity import sign_for


def sse_events(raw: str) -> list[tuple[str, Any]]:
    """The (event, data) pairs of a /api/chat event stream, read as the chat page reads it."""
    found = []
    for frame in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines())
        found.append((lines["event"], json.loads(lines["data"])))
    return found


async def as_user(client: Any, user: str) -> dict[str, str]:
    """The `user` and `sig` fields (or query parameters) for `user` on this test client."""
    return {"user": user, "sig": await sign_for(client.app[SETTINGS], user)}
