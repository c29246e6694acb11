"""Web chat identities end to end: issued by the server, required afterwards, unspoofable."""

from __future__ import annotations

import redis
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import Session, select

from bot import keys
from bot.db.engine import get_engine
from bot.db.models import Conversation, Message
from bot.web import identity as web_identity
from bot.web.app import create_app


async def test_first_answer_issues_an_identity_that_later_requests_keep(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    settings = make_settings(**fakes.sections(wecom_app))
    client = await make_client(settings)
    celery_worker(settings)
    resp = await client.post("/api/chat", json={"text": "发票怎么开"})
    assert resp.status == 200, await resp.text()
    first = await resp.json()
    assert first["reply"] == "ANSWER: 发票怎么开"
    assert first["user"].startswith("web-")
    assert first["conversation"] == first["user"]
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"{web_identity.COOKIE}={first['user']}.{first['sig']}")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    # The cookie alone identifies the browser; the body fields do too (`bot chat`).
    again = await (await client.post("/api/chat", json={"text": "运费谁出"})).json()
    body = {"user": first["user"], "sig": first["sig"], "text": "多久发货"}
    fresh = TestClient(TestServer(create_app(settings)))
    await fresh.start_server()
    try:
        third = await (await fresh.post("/api/chat", json=body)).json()
    finally:
        await fresh.close()
    assert again["user"] == third["user"] == first["user"]
    with Session(get_engine(settings.core.effective_database_url())) as s:
        [conv] = s.exec(select(Conversation)).all()
        assert conv.external_id == first["user"]
        inbound = s.exec(select(Message).where(Message.direction == "in")).all()
        assert len(inbound) == 3


async def test_claiming_another_users_id_is_refused_before_anything_runs(
    make_settings, make_client, fakes, wecom_app
) -> None:
    settings = make_settings(**fakes.sections(wecom_app))
    client = await make_client(settings)
    victim = await (await client.get("/api/chat/messages")).json()
    attacker = TestClient(TestServer(create_app(settings)), cookie_jar=CookieJar(unsafe=True))
    await attacker.start_server()
    try:
        attempts = [
            {"user": victim["user"]},
            {"user": victim["user"], "sig": "0" * 32},
            {"user": victim["user"], "sig": web_identity.sign(b"guessed", victim["user"])},
        ]
        for claim in attempts:
            resp = await attacker.post("/api/chat", json={**claim, "text": "查一下我的订单"})
            assert resp.status == 401, claim
            assert "unauthorized web chat user" in (await resp.json())["error"]
            polled = await attacker.get("/api/chat/messages", params={**claim, "after": "0-0"})
            assert polled.status == 401, claim
    finally:
        await attacker.close()
    # A valid cookie does not sign for anyone else named in the body either.
    resp = await client.post("/api/chat", json={"user": "web-someone-else", "text": "你好"})
    assert resp.status == 401
    assert fakes.vllm.matching("/chat/completions") == []
    with Session(get_engine(settings.core.effective_database_url())) as s:
        assert s.exec(select(Message)).all() == []


async def test_replicas_agree_on_the_generated_key_kept_in_redis(
    make_settings, make_client, redis_url
) -> None:
    settings = make_settings()
    one, two = await make_client(settings), await make_client(settings)
    issued = await (await one.get("/api/chat/messages")).json()
    assert issued["messages"] == []
    assert issued["last"] == "0-0"
    resp = await two.get(
        "/api/chat/messages", params={"user": issued["user"], "sig": issued["sig"]}
    )
    assert resp.status == 200
    assert (await resp.json())["user"] == issued["user"]
    assert "Set-Cookie" not in resp.headers  # not a new identity
    stored = redis.Redis.from_url(redis_url).get(keys.WEBCHAT_IDENTITY_SECRET)
    assert stored is not None
    assert len(stored) == 64
    # The cookie from the first answer keeps the same user on the next poll.
    assert (await (await one.get("/api/chat/messages")).json())["user"] == issued["user"]


async def test_a_configured_secret_signs_without_touching_redis(
    make_settings, make_client, redis_url
) -> None:
    settings = make_settings(core={"secret_key": "a-long-random-secret"})
    client = await make_client(settings)
    issued = await (await client.get("/api/chat/messages")).json()
    key = b"a-long-random-secret"
    assert issued["sig"] == web_identity.sign(key, issued["user"])
    assert redis.Redis.from_url(redis_url).get(keys.WEBCHAT_IDENTITY_SECRET) is None
