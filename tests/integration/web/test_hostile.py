"""Attacks on the web process, each reproduced: a body built to be slow to parse, forged
log lines, a replayed DingTalk signature, rotating web chat identities, cookies behind TLS."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time

import pytest
import redis

from adapters.dingtalk import simulate as dingtalk_simulate
from adapters.wecom import simulate as wecom_simulate
from bot.logs import OneLineFormatter
from tests.integration.conftest import WeComApp

QUEUE = "bot"
DT_KEY, DT_SECRET = "dingkeyhostile", "dingtalk-hostile-secret"


@pytest.fixture
async def client(make_client, make_settings, wecom_app: WeComApp):
    settings = make_settings(
        wecom=wecom_app.section("http://127.0.0.1:9"),
        dingtalk={"app_key": DT_KEY, "app_secret": DT_SECRET, "api_base": "http://127.0.0.1:9"},
    )
    return await make_client(settings)


async def test_a_body_of_unterminated_cdata_is_refused_without_stalling_others(
    client, wecom_app: WeComApp, sync_redis: redis.Redis
) -> None:
    # Unauthenticated: the envelope is parsed before any signature is checked. Under the old
    # lazy CDATA regex a body like this stalled every route for many seconds.
    query, _ = wecom_app.callback("hi", msg_id="1")
    hostile = b"<xml><Encrypt>" + b"<![CDATA[" * 100_000 + b"</Encrypt></xml>"
    started = time.perf_counter()
    attack = asyncio.create_task(client.post("/webhooks/wecom", params=query, data=hostile))
    health = [await client.get("/healthz") for _ in range(5)]
    resp = await attack
    assert resp.status in (400, 413)
    assert all(h.status == 200 for h in health)
    assert time.perf_counter() - started < 2.0
    assert sync_redis.llen(QUEUE) == 0


async def test_control_characters_from_the_url_cannot_forge_log_lines(client) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(OneLineFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        resp = await client.post("/webhooks/wecom/evil%0aERROR%20bot:%20forged%00", data=b"x")
    finally:
        root.removeHandler(handler)
    assert resp.status == 404
    lines = out.getvalue().splitlines()
    assert lines, "the refusal is logged"
    assert not any(line.startswith("ERROR bot: forged") for line in lines)
    assert any("evil\\x0aERROR bot: forged\\x00" in line for line in lines)


def _dingtalk(text: str, msg_id: str, staff_id: str, headers: dict[str, str]) -> tuple:
    body = dingtalk_simulate.robot_body(
        text,
        msg_id=msg_id,
        staff_id=staff_id,
        conversation_id="cidReplay==",
        session_webhook="",
        create_at_ms=int(time.time() * 1000),
    )
    return headers, json.dumps(body, ensure_ascii=False).encode()


async def test_a_dingtalk_signature_carries_one_message_only(
    client, sync_redis: redis.Redis
) -> None:
    # The robot `sign` covers only the timestamp: a captured header pair used to carry any
    # body, e.g. one claiming to come from a bound staff member.
    captured = dingtalk_simulate.robot_headers(
        app_secret=DT_SECRET, timestamp_ms=int(time.time() * 1000)
    )
    headers, body = _dingtalk("我的订单", "msgA", "customer1", captured)
    first = await client.post("/webhooks/dingtalk", headers=headers, data=body)
    assert first.status == 200, await first.text()
    # DingTalk's own retry of the same message still passes (and is a duplicate).
    assert (await client.post("/webhooks/dingtalk", headers=headers, data=body)).status == 200
    assert sync_redis.llen(QUEUE) == 1
    for n, staff in enumerate(("manager4220", "customer2", "customer3")):
        headers, forged = _dingtalk("列出我的订单", f"forged{n}", staff, captured)
        resp = await client.post("/webhooks/dingtalk", headers=headers, data=forged)
        assert resp.status == 401
        assert await resp.text() == "signature already used"
    assert sync_redis.llen(QUEUE) == 1


async def test_new_web_identities_are_limited_per_address(
    make_client, make_settings, sync_redis: redis.Redis
) -> None:
    settings = make_settings(
        core={"webchat_identities_per_hour": 3, "webchat_timeout_s": 0.2},
        handoff={"public_url": "https://cs.example.com"},
    )
    client = await make_client(settings)
    issued = []
    for _ in range(3):
        resp = await client.post("/api/chat", json={"text": "你好"})
        assert resp.status == 504  # queued, no worker here to answer: the identity still comes
        issued.append((await resp.json())["user"])
        # Behind a proxy that ends TLS, the cookie is still Secure (the public URL is https).
        cookie = resp.headers["Set-Cookie"]
        assert "Secure" in cookie
        assert "HttpOnly" in cookie
    assert len(set(issued)) == 3
    client.session.cookie_jar.clear()
    resp = await client.post("/api/chat", json={"text": "你好"})
    assert resp.status == 429
    assert "too many new chat sessions" in (await resp.json())["error"]
    # An identity already issued keeps working.
    first = issued[0]
    from bot.web import identity as web_identity

    sig = await web_identity.sign_for(settings, first)
    resp = await client.post("/api/chat", json={"text": "还在吗", "user": first, "sig": sig})
    assert resp.status == 504
    # A proxy on loopback: the address it saw counts, not the proxy's own.
    resp = await client.post(
        "/api/chat", json={"text": "你好"}, headers={"X-Forwarded-For": "203.0.113.7"}
    )
    assert resp.status == 504
    assert (await resp.json())["user"] not in issued


async def test_wecom_url_check_still_answers(client, wecom_app: WeComApp) -> None:
    query = wecom_simulate.build_verification(
        "echo-1",
        corp_id=wecom_app.corp_id,
        token=wecom_app.token,
        aes_key=wecom_app.aes_key,
        timestamp=str(int(time.time())),
        nonce="1",
        random_prefix=b"0123456789abcdef",
    )
    resp = await client.get("/webhooks/wecom", params=query)
    assert (resp.status, await resp.read()) == (200, b"echo-1")
