"""The console on the embedded default (SQLite, as `bot up` runs it): every page an admin
opens answers, with a conversation answered by the bot and one handed to a human, and the
desk's claim and reply work. The rest of the console's tests run on PostgreSQL."""

from __future__ import annotations

from sqlmodel import Session, select

from bot.db.models import Conversation
from tests.integration.console.conftest import csrf_of
from tests.integration.webchat import as_user


async def test_every_console_page_answers_on_sqlite(console, celery_worker, tmp_path) -> None:
    c = await console(database_url=f"sqlite:///{(tmp_path / 'embedded.db').as_posix()}")
    assert c.engine.dialect.name == "sqlite"
    celery_worker(c.settings)
    for user, text in (("web-e1", "运费怎么算"), ("web-e2", "转人工")):
        resp = await c.client.post(
            "/api/chat", json={**await as_user(c.client, user), "text": text}
        )
        assert resp.status == 200
    with Session(c.engine) as s:
        handed = s.exec(select(Conversation).where(Conversation.external_id == "web-e2")).one()
    c.add("boss", "admin")
    assert (await c.sign_in("boss")).status == 303
    kb = "/console/knowledge/default"
    pages = [
        "/console/inbox",
        "/console/inbox/rows",
        "/console/conversations",
        "/console/conversations?outcome=handoff",
        "/console/conversations.csv",
        f"/console/conversations/{handed.id}",
        f"/console/conversations/{handed.id}/messages",
        "/console/canned",
        "/console/accounts",
        "/console/audit",
        "/console/knowledge",
        "/console/knowledge/unanswered",
        f"{kb}?q=退货",
        f"{kb}/documents",
        f"{kb}/faq",
        "/console/dashboard",
        "/console/channels",
        "/console/rules",
        "/console/bindings",
        "/console/presence",
    ]
    statuses = {path: (await c.client.get(path)).status for path in pages}
    assert {path: s for path, s in statuses.items() if s != 200} == {}

    page = await (await c.client.get(f"/console/conversations/{handed.id}")).text()
    claimed = await c.client.post(
        f"/console/conversations/{handed.id}/claim", data={"csrf_token": csrf_of(page)}
    )
    assert claimed.status == 200
    sent = await c.client.post(
        f"/console/conversations/{handed.id}/reply",
        data={"csrf_token": csrf_of(await claimed.text()), "text": "您好，我来帮您"},
    )
    assert sent.status == 200
    assert (
        "您好，我来帮您"
        in await (await c.client.get(f"/console/conversations/{handed.id}/messages")).text()
    )
