"""What the console's guard leaves on a request for its pages: the language and the operator."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import MultipartReader, web

from bot.console import sessions
from bot.db.models import ConsoleAccount


@dataclass(frozen=True)
class Operator:
    """The signed-in operator of a request."""

    account: ConsoleAccount
    session: sessions.ConsoleSession

    @property
    def name(self) -> str:
        return self.account.username

    @property
    def role(self) -> str:
        return self.account.role


LANG = web.RequestKey("console_lang", str)
OPERATOR = web.RequestKey("console_operator", Operator)
# An admin's or agent's presence (bot/handoff/presence.py), kept alive by their every request.
PRESENCE = web.RequestKey("console_presence", str)
# A multipart POST whose first part (the CSRF field) the guard has read: the handler reads on.
UPLOAD = web.RequestKey("console_upload", MultipartReader)
