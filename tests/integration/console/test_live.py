"""Live updates of an open conversation over HTTP: the events stream says `changed` when the
customer's next message is stored, without waiting for a poll; an unknown conversation is
404; without a session no stream is opened."""

from __future__ import annotations

import asyncio

from tests.integration.webchat import as_user


async def test_a_new_message_is_announced_at_once(console, celery_worker) -> None:
    c = await console()
    celery_worker(c.settings)
    c.add("wang", "agent")
    me = await as_user(c.client, "web-live")
    await c.client.post("/api/chat", json={**me, "text": "你好"})
    await c.sign_in("wang")
    rows = await (await c.client.get("/console/conversations")).text()
    conv = rows.split('href="/console/conversations/', 1)[1].split('"', 1)[0]

    stream = await c.client.get(f"/console/conversations/{conv}/events")
    assert stream.status == 200
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    assert await stream.content.readline() == b"retry: 3000\n"
    await stream.content.readline()
    await c.client.post("/api/chat", json={**me, "text": "我的快递到哪了"})

    async def next_event() -> bytes:
        while True:
            line = await stream.content.readline()
            if line.startswith(b"event:"):
                return line

    assert await asyncio.wait_for(next_event(), 10) == b"event: changed\n"
    stream.close()
    assert (await c.client.get("/console/conversations/999999/events")).status == 404


async def test_no_stream_without_a_session(console) -> None:
    c = await console()
    resp = await c.client.get("/console/conversations/1/events", allow_redirects=False)
    assert resp.status == 303
