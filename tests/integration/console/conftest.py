"""The console over HTTP: a web process with a worker, fake model and fake WeCom, and
operators signed in through the real sign-in form."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from bot.console import accounts
from bot.db.engine import get_engine
from bot.settings import Settings

PASSWORD = "correct horse 9"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


@dataclass
class Console:
    client: Any
    settings: Settings
    engine: Engine

    def add(self, username: str, role: str, password: str = PASSWORD) -> None:
        accounts.add(self.engine, username, password, role)

    async def sign_in(self, username: str, password: str = PASSWORD, *, client: Any = None) -> Any:
        """Post the sign-in form as a browser does; returns the response (not followed)."""
        client = client or self.client
        page = await client.get("/console/login")
        token = csrf_of(await page.text())
        return await client.post(
            "/console/login",
            data={
                "username": username,
                "password": password,
                "csrf_token": token,
                "next": "/console/",
            },
            allow_redirects=False,
        )

    async def csrf(self, path: str = "/console/conversations") -> str:
        """The session's CSRF token, read off a page as the browser would."""
        return csrf_of(await (await self.client.get(path)).text())


@pytest.fixture
def console(make_settings, make_client, fakes, wecom_app) -> Callable[..., Any]:
    async def start(**core: Any) -> Console:
        settings = make_settings(
            **fakes.sections(wecom_app),
            core={"rate_per_minute": 0, "rate_per_day": 0, **core},
            console={"login_failures": 3, "lockout_s": 60},
        )
        client = await make_client(settings)
        return Console(client, settings, get_engine(settings.core.effective_database_url()))

    return start
