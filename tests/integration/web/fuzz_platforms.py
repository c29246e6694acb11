"""Signed probes of the HTTP fuzz (test_http_fuzz.py) per platform: requests that pass the
signature and decryption but whose content is shaped in every wrong way.

Built with the simulators the adapters verify with (adapters/*/simulate.py and the crypto
they use); timestamps are fresh (a signature must be in its window), everything else comes
from the caller's `random.Random`.
"""

from __future__ import annotations

import json
import random
from urllib.parse import urlencode

from adapters.dingtalk import simulate as dingtalk_simulate
from adapters.feishu import crypto as feishu_crypto
from adapters.feishu import simulate as feishu_simulate
from adapters.wechat import crypto as wechat_crypto
from adapters.wechat import simulate as wechat_simulate
from adapters.wechat_mp import simulate as mp_simulate
from adapters.wecom_aibot import simulate as aibot_simulate
from adapters.wecom_kf import simulate as kf_simulate
from tests.integration.web import fuzz_junk as junk
from tests.integration.web.fuzz_probes import Context, Probe

# --- WeCom, 微信客服, Official Account: WXBizMsgCrypt ------------------------------------------

WECHAT_NAMES = (
    "ToUserName",
    "FromUserName",
    "CreateTime",
    "MsgType",
    "Content",
    "MsgId",
    "AgentID",
    "Event",
    "EventKey",
    "PicUrl",
    "MediaId",
    "Format",
    "Recognition",
    "Location_X",
    "Scale",
    "Title",
    "Url",
    "Token",
    "OpenKfId",
    "ChangeType",
)
MSG_TYPES = ("text", "image", "voice", "video", "location", "link", "file", "event", "miniprogram")


def _inner(rng: random.Random, base: dict[str, str]) -> bytes:
    """A decrypted body: the base message with fields changed, or any bytes at all."""
    if rng.random() < 0.25:
        return junk.body(rng)
    fields = {**base, "MsgType": rng.choice(MSG_TYPES)} if rng.random() < 0.3 else base
    if fields.get("MsgType") == "event":
        fields = {**fields, "Event": rng.choice(("subscribe", "CLICK", "enter_agent", "x"))}
    return junk.mutated_fields(rng, fields, WECHAT_NAMES)


def _stamp(rng: random.Random, ctx: Context) -> wechat_simulate.Stamp:
    return {
        "timestamp": str(int(ctx.now())),
        "nonce": str(rng.randrange(10**9)),
        "random_prefix": rng.randbytes(16),
    }


def _envelope(rng: random.Random, encrypted: str, to_user: str, agent_id: str) -> bytes:
    """The outer XML, whose fields besides Encrypt no signature covers."""
    fields = {"ToUserName": to_user, "Encrypt": encrypted, "AgentID": agent_id}
    for name in rng.sample(list(fields), rng.randrange(0, 2)):
        if name != "Encrypt":
            fields[name] = junk.text(rng)
    return junk.xml(fields)


def _sealed_wechat(
    rng: random.Random, ctx: Context, plain: bytes, *, token: str, aes: str, receiver: str
) -> tuple[dict[str, str], str]:
    # Now and then sealed for another receiver: the signature holds, the receiver id does not.
    receiver = receiver if rng.random() < 0.9 else junk.text(rng)
    encrypted, query = wechat_simulate.seal(
        plain, token=token, aes_key=aes, receive_id=receiver, **_stamp(rng, ctx)
    )
    return query, encrypted


def signed_wecom(rng: random.Random, ctx: Context) -> Probe:
    k = ctx.keys
    base = {
        "ToUserName": k.corp_id,
        "FromUserName": f"user{rng.randrange(50)}",
        "CreateTime": str(int(ctx.now())),
        "MsgType": "text",
        "Content": "你好",
        "MsgId": str(10**17 + ctx.next()),
        "AgentID": k.agent_id,
    }
    query, encrypted = _sealed_wechat(
        rng, ctx, _inner(rng, base), token=k.wecom_token, aes=k.wecom_aes, receiver=k.corp_id
    )
    body = _envelope(rng, encrypted, k.corp_id, k.agent_id)
    return Probe("POST", "/webhooks/wecom", urlencode(query), body=body, signed=True)


def signed_wecom_kf(rng: random.Random, ctx: Context) -> Probe:
    k = ctx.keys
    base = {
        key: str(value)
        for key, value in kf_simulate.callback_fields(
            corp_id=k.corp_id,
            sync_token=f"sync{ctx.next()}",
            open_kfid="wkfuzz",
            create_time=int(ctx.now()),
        ).items()
    }
    query, encrypted = _sealed_wechat(
        rng, ctx, _inner(rng, base), token=k.kf_token, aes=k.kf_aes, receiver=k.corp_id
    )
    body = _envelope(rng, encrypted, k.corp_id, "")
    return Probe("POST", "/webhooks/wecom_kf", urlencode(query), body=body, signed=True)


def signed_wechat_mp(rng: random.Random, ctx: Context) -> Probe:
    """Safe mode on the default app, plaintext mode on `/webhooks/wechat_mp/plain` (whose
    signature covers no body at all: any body rides on one valid query)."""
    k = ctx.keys
    openid = f"o{rng.randrange(50)}"
    base = {
        "ToUserName": "gh_fuzz",
        "FromUserName": openid,
        "CreateTime": str(int(ctx.now())),
        "MsgType": "text",
        "Content": "你好",
        "MsgId": str(10**17 + ctx.next()),
    }
    inner = _inner(rng, base)
    if rng.random() < 0.5:
        stamp = _stamp(rng, ctx)
        query, body = mp_simulate.plain_post(
            inner,
            token=k.mp_token,
            timestamp=stamp["timestamp"],
            nonce=stamp["nonce"],
            openid=openid,
        )
        return Probe("POST", "/webhooks/wechat_mp/plain", urlencode(query), body=body, signed=True)
    # Safe mode: msg_signature over Encrypt; the envelope's ToUserName no signature covers.
    query, encrypted = _sealed_wechat(
        rng, ctx, inner, token=k.mp_token, aes=k.mp_aes, receiver=k.mp_app_id
    )
    query |= {
        "signature": wechat_crypto.plain_signature(k.mp_token, query["timestamp"], query["nonce"]),
        "openid": openid,
        "encrypt_type": "aes",
    }
    to_user = junk.text(rng) if rng.random() < 0.2 else "gh_fuzz"
    body = junk.xml({"ToUserName": to_user, "Encrypt": encrypted})
    return Probe("POST", "/webhooks/wechat_mp", urlencode(query), body=body, signed=True)


# --- DingTalk: robot messages (sign over the timestamp) and encrypted events ----------------


def signed_dingtalk(rng: random.Random, ctx: Context) -> Probe:
    k = ctx.keys
    # A fresh timestamp per probe: each (timestamp, sign) pair carries one message.
    stamp_ms = int(ctx.now() * 1000) - ctx.next()
    if rng.random() < 0.7:
        base = dingtalk_simulate.robot_body(
            "怎么退货",
            msg_id=f"msg{stamp_ms}",
            staff_id=f"staff{rng.randrange(50)}",
            conversation_id="cidfuzz",
            session_webhook="https://oapi.dingtalk.com/robot/sendBySession?session=x",
            create_at_ms=stamp_ms,
            group=rng.random() < 0.3,
        )
        roll = rng.random()
        if roll < 0.7:
            body = json.dumps(junk.mutated(rng, base), ensure_ascii=False).encode()
        elif roll < 0.85:
            body = json.dumps(junk.json_value(rng)).encode()
        else:
            body = junk.body(rng)
        headers = dingtalk_simulate.robot_headers(app_secret=k.dt_secret, timestamp_ms=stamp_ms)
        return Probe(
            "POST",
            "/webhooks/dingtalk",
            headers=tuple((n, v.encode()) for n, v in headers.items()),
            body=body,
            signed=True,
        )
    event = {"EventType": "chat_add_member", "ChatId": "c1", "Operator": "u1", "UserId": ["u2"]}
    roll = rng.random()
    if roll < 0.6:
        plain = json.dumps(junk.mutated(rng, event), ensure_ascii=False).encode()
    elif roll < 0.8:
        plain = json.dumps(junk.json_value(rng)).encode()
    else:
        plain = junk.body(rng)
    stamp = _stamp(rng, ctx)
    stamp["timestamp"] = str(stamp_ms)
    encrypted, signed = wechat_simulate.seal(
        plain, token=k.dt_token, aes_key=k.dt_aes, receive_id=k.dt_key, **stamp
    )
    query = {"msg_signature": signed["msg_signature"], "timeStamp": str(stamp_ms)}
    query["nonce"] = stamp["nonce"]
    body = json.dumps({"encrypt": encrypted}).encode()
    return Probe("POST", "/webhooks/dingtalk", urlencode(query), body=body, signed=True)


# --- Feishu: encrypted and signed (default app), plaintext with the token (`plain`) ---------


def signed_feishu(rng: random.Random, ctx: Context) -> Probe:
    k = ctx.keys
    now = int(ctx.now())
    n = ctx.next()
    event = feishu_simulate.text_event(
        "你好",
        user_open_id=f"ou_{rng.randrange(50)}",
        message_id=f"om_{n}",
        chat_id="oc_fuzz",
        create_time_ms=now * 1000,
        group=rng.random() < 0.3,
        mention_bot=rng.random() < 0.5,
        bot_open_id=k.fs_bot,
    )
    base = feishu_simulate.envelope(
        "im.message.receive_v1",
        event,
        app_id=k.fs_app_id,
        verification_token=k.fs_token,
        event_id=f"ev_{n}",
        create_time_ms=now * 1000,
    )
    if rng.random() < 0.15:
        base = {"challenge": "c1", "token": k.fs_token, "type": "url_verification"}
    roll = rng.random()
    if roll < 0.75:
        plain = json.dumps(junk.mutated(rng, base), ensure_ascii=False).encode()
    elif roll < 0.9:
        plain = json.dumps(junk.json_value(rng)).encode()
    else:
        plain = junk.body(rng)
    if rng.random() < 0.3:
        return Probe("POST", "/webhooks/feishu/plain", body=plain, signed=True)
    timestamp, nonce = str(now), str(rng.randrange(10**9))
    blob = feishu_crypto.encrypt(plain, k.fs_key, rng.randbytes(16))
    body = json.dumps({"encrypt": blob}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Lark-Request-Timestamp": timestamp,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": feishu_crypto.signature(timestamp, nonce, k.fs_key, body),
    }
    return Probe(
        "POST",
        "/webhooks/feishu",
        headers=tuple((name, value.encode()) for name, value in headers.items()),
        body=body,
        signed=True,
    )


# --- WeCom 智能机器人: WXBizMsgCrypt over JSON, empty receive id ---------------------------------


def signed_wecom_aibot(rng: random.Random, ctx: Context) -> Probe:
    """Messages, refreshes (some of streams that exist, most not) and events, mutated."""
    k = ctx.keys
    n = ctx.next()
    user = f"user{rng.randrange(50)}"
    chatid = "wrfuzz" if rng.random() < 0.3 else ""
    roll = rng.random()
    if roll < 0.4:
        base = aibot_simulate.text_message(
            "@bot 你好", msgid=f"fz{n}", user=user, chatid=chatid, quote="引用" * rng.randrange(2)
        )
    elif roll < 0.7:
        sid = junk.text(rng) if rng.random() < 0.3 else f"s{rng.randrange(100)}"
        base = aibot_simulate.refresh(sid or "s", msgid=f"fz{n}", user=user)
    else:
        kind = rng.choice(("enter_chat", "feedback_event", "template_card_event", "x"))
        body = {"id": f"fz{rng.randrange(n + 1)}", "type": rng.randrange(5)}
        base = aibot_simulate.event(
            kind, body, msgid=f"fz{n}", create_time=int(ctx.now()), user=user, chatid=chatid
        )
    pick = rng.random()
    if pick < 0.4:  # well formed: the accepted paths (a refresh reads Redis) are fuzzed too
        plain = json.dumps(base, ensure_ascii=False).encode()
    elif pick < 0.8:
        plain = json.dumps(junk.mutated(rng, base), ensure_ascii=False).encode()
    elif pick < 0.9:
        plain = json.dumps(junk.json_value(rng)).encode()
    else:
        plain = junk.body(rng)
    query, encrypted = _sealed_wechat(
        rng, ctx, plain, token=k.aibot_token, aes=k.aibot_aes, receiver=""
    )
    outer: object = {"encrypt": encrypted}
    if rng.random() < 0.1:
        outer = junk.mutated(rng, {"encrypt": encrypted})
    body_bytes = json.dumps(outer).encode()
    return Probe("POST", "/webhooks/wecom_aibot", urlencode(query), body=body_bytes, signed=True)
