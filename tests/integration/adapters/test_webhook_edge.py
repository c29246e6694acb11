"""The web edge: real HTTP, real signatures and AES, real Redis and broker queue."""

from __future__ import annotations

import base64
import io
import logging
import time

import pytest
import redis

from adapters.wechat import crypto as wechat_crypto
from adapters.wecom import simulate as wecom_simulate
from adapters.xml import build_xml
from tests.integration.conftest import WeComApp

QUEUE = "bot"  # the Celery queue: a Redis list on the broker


def _queued(sync_redis: redis.Redis) -> int:
    return int(sync_redis.llen(QUEUE))


@pytest.fixture
async def client(make_client, make_settings, wecom_app: WeComApp):
    return await make_client(make_settings(wecom=wecom_app.section("http://127.0.0.1:9")))


async def test_message_is_queued_once_and_acked(client, wecom_app, sync_redis) -> None:
    query, body = wecom_app.callback("怎么退货", msg_id="555001")
    resp = await client.post("/webhooks/wecom", params=query, data=body)
    assert resp.status == 200
    assert await resp.read() == b""
    assert _queued(sync_redis) == 1
    # WeCom retries the same message (same MsgId, maybe new signature): nothing more queued.
    query, body = wecom_app.callback("怎么退货", msg_id="555001")
    resp = await client.post("/webhooks/wecom", params=query, data=body)
    assert resp.status == 200
    assert _queued(sync_redis) == 1


async def test_url_verification_echoes_the_plaintext(client, wecom_app) -> None:
    query = wecom_simulate.build_verification(
        "1616140317555161061",
        corp_id=wecom_app.corp_id,
        token=wecom_app.token,
        aes_key=wecom_app.aes_key,
        timestamp=str(int(time.time())),
        nonce="9527",
        random_prefix=b"0123456789abcdef",
    )
    resp = await client.get("/webhooks/wecom", params=query)
    assert resp.status == 200
    assert await resp.read() == b"1616140317555161061"


def _tamper_signature(query: dict[str, str]) -> dict[str, str]:
    sig = query["msg_signature"]
    return {**query, "msg_signature": ("0" if sig[0] != "0" else "1") + sig[1:]}


async def _assert_refused(client, sync_redis, caplog, query, body, status: int) -> None:
    caplog.set_level(logging.WARNING, logger="bot.web.app")
    resp = await client.post("/webhooks/wecom", params=query, data=body)
    assert resp.status == status
    assert _queued(sync_redis) == 0
    assert any(
        "rejected wecom" in r.getMessage() or "refused" in r.getMessage() for r in caplog.records
    )


async def test_wrong_signature_is_401(client, wecom_app, sync_redis, caplog) -> None:
    query, body = wecom_app.callback("hi")
    await _assert_refused(client, sync_redis, caplog, _tamper_signature(query), body, 401)


async def test_stale_timestamp_is_401(client, wecom_app, sync_redis, caplog) -> None:
    query, body = wecom_app.callback("hi", timestamp=int(time.time()) - 3600)
    await _assert_refused(client, sync_redis, caplog, query, body, 401)


async def test_wrong_corp_id_is_400(client, wecom_app, sync_redis, caplog) -> None:
    query, body = wecom_app.callback("hi", corp_id="wwsomeoneelse")
    await _assert_refused(client, sync_redis, caplog, query, body, 400)


def _sealed(wecom_app: WeComApp, ciphertext: bytes) -> tuple[dict[str, str], bytes]:
    encrypted = base64.b64encode(ciphertext).decode()
    ts, nonce = str(int(time.time())), "4242"
    query = {
        "msg_signature": wechat_crypto.signature(wecom_app.token, ts, nonce, encrypted),
        "timestamp": ts,
        "nonce": nonce,
    }
    return query, build_xml(
        {"ToUserName": wecom_app.corp_id, "Encrypt": encrypted, "AgentID": wecom_app.agent_id}
    )


def _raw_cbc(key: bytes, plaintext: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return enc.update(plaintext) + enc.finalize()


async def test_corrupt_padding_is_400(client, wecom_app, sync_redis, caplog) -> None:
    key = wechat_crypto.decode_aes_key(wecom_app.aes_key)
    inner = b"<xml><Content>hi</Content></xml>"
    full = b"r" * 16 + len(inner).to_bytes(4, "big") + inner + wecom_app.corp_id.encode()
    pad = 32 - len(full) % 32
    full += bytes([pad] * (pad - 1)) + bytes([pad - 1 if pad > 1 else 33])  # inconsistent pad
    query, body = _sealed(wecom_app, _raw_cbc(key, full))
    await _assert_refused(client, sync_redis, caplog, query, body, 400)


async def test_external_entity_in_envelope_is_400(client, wecom_app, sync_redis, caplog) -> None:
    query, _ = wecom_app.callback("hi")
    body = (
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<xml><ToUserName>&x;</ToUserName><Encrypt>abc</Encrypt></xml>"
    )
    await _assert_refused(client, sync_redis, caplog, query, body, 400)


async def test_entity_expansion_inside_ciphertext_is_400(
    client, wecom_app, sync_redis, caplog
) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b"<xml><Content>&lol2;</Content><MsgType>text</MsgType></xml>"
    )
    encrypted = wechat_crypto.encrypt(
        bomb,
        aes_key=wechat_crypto.decode_aes_key(wecom_app.aes_key),
        receiver_id=wecom_app.corp_id,
        random_prefix=b"0123456789abcdef",
    )
    ts, nonce = str(int(time.time())), "77"
    query = {
        "msg_signature": wechat_crypto.signature(wecom_app.token, ts, nonce, encrypted),
        "timestamp": ts,
        "nonce": nonce,
    }
    body = build_xml({"ToUserName": wecom_app.corp_id, "Encrypt": encrypted, "AgentID": "1"})
    await _assert_refused(client, sync_redis, caplog, query, body, 400)


async def test_malformed_xml_is_400(client, wecom_app, sync_redis, caplog) -> None:
    query, _ = wecom_app.callback("hi")
    await _assert_refused(client, sync_redis, caplog, query, b"<xml><Encrypt>abc</xml", 400)


async def test_oversized_body_is_413(client, wecom_app, sync_redis) -> None:
    query, _ = wecom_app.callback("hi")
    resp = await client.post(
        "/webhooks/wecom", params=query, data=io.BytesIO(b"x" * ((1 << 20) + 1))
    )
    assert resp.status == 413
    assert _queued(sync_redis) == 0


async def test_unknown_or_unconfigured_platform_is_404(client) -> None:
    assert (await client.post("/webhooks/nosuch", data=b"")).status == 404
    assert (await client.post("/webhooks/feishu", data=b"{}")).status == 404
    assert (await client.post("/webhooks/wecom/otherapp", data=b"")).status == 404


async def test_redis_down_answers_503_and_queues_nothing(
    make_client, make_settings, wecom_app, sync_redis, caplog
) -> None:
    # Nothing listens on port 1: the same failure as a stopped Redis.
    settings = make_settings(
        core={"redis_url": "redis://127.0.0.1:1/0"}, wecom=wecom_app.section("http://127.0.0.1:9")
    )
    client = await make_client(settings)
    query, body = wecom_app.callback("hi")
    caplog.set_level(logging.ERROR, logger="bot.web.app")
    resp = await client.post("/webhooks/wecom", params=query, data=body)
    assert resp.status == 503
    assert any("cannot queue" in r.getMessage() for r in caplog.records)
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["redis"].startswith("down")
    assert _queued(sync_redis) == 0


async def test_health_ready_and_metrics(client, wecom_app) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200, await ready.text()
    assert await ready.json() == {"status": "ok", "redis": "ok", "database": "ok", "broker": "ok"}
    query, body = wecom_app.callback("hi")
    await client.post("/webhooks/wecom", params=query, data=body)
    text = await (await client.get("/metrics")).text()
    assert 'bot_webhooks_total{outcome="queued",platform="wecom"}' in text


async def test_chat_page_is_served(client) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    assert "/api/chat" in await resp.text()


async def test_chat_rejects_bad_input_clearly(client) -> None:
    resp = await client.post("/api/chat", data=b"not json")
    assert resp.status == 400
    resp = await client.post("/api/chat", json={"user": "u1", "text": ""})
    assert resp.status == 400
    assert (await resp.json())["details"][0]["field"] == "text"
