"""The requests of the HTTP fuzz (test_http_fuzz.py), per route: unsigned junk anyone can
send, and requests that pass the signature (or carry a valid web identity or transcript
link) but whose content is shaped in every wrong way.

Signed requests are built with the simulators the adapters verify with
(adapters/*/simulate.py); their timestamps are fresh (a signature must be in its window),
everything else comes from the caller's `random.Random`.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from adapters.dingtalk import simulate as dingtalk_simulate
from adapters.feishu import crypto as feishu_crypto
from adapters.feishu import simulate as feishu_simulate
from adapters.wechat import crypto as wechat_crypto
from adapters.wechat import simulate as wechat_simulate
from adapters.wechat_mp import simulate as mp_simulate
from adapters.wecom_kf import simulate as kf_simulate
from tests.integration.web import fuzz_junk as junk


def _aes_key(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(43))


@dataclass(frozen=True)
class Keys:
    """Every credential the app under test is configured with (test_http_fuzz.settings)."""

    corp_id: str = "wwfuzzcorp"
    agent_id: str = "1000002"
    wecom_token: str = "wecom-fuzz-token"
    wecom_aes: str = field(default_factory=lambda: _aes_key(random.Random(1)))
    kf_token: str = "kf-fuzz-token"
    kf_aes: str = field(default_factory=lambda: _aes_key(random.Random(2)))
    mp_app_id: str = "wxfuzzapp"
    mp_token: str = "mp-fuzz-token"
    mp_aes: str = field(default_factory=lambda: _aes_key(random.Random(3)))
    dt_key: str = "dingfuzzkey"
    dt_secret: str = "dingtalk-fuzz-secret"
    dt_token: str = "dt-fuzz-token"
    dt_aes: str = field(default_factory=lambda: _aes_key(random.Random(4)))
    fs_app_id: str = "cli_fuzz"
    fs_token: str = "feishu-fuzz-token"
    fs_key: str = "feishu fuzz key"
    fs_bot: str = "ou_fuzz_bot"
    admin_token: str = "admin-fuzz-token-0123456789abcdef"


@dataclass(frozen=True)
class Probe:
    """One request as it goes on the wire."""

    method: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, bytes], ...] = ()
    body: bytes = b""
    signed: bool = False

    def wire(self, host: str) -> bytes:
        target = f"{self.path}?{self.query}" if self.query else self.path
        head = [f"{self.method} {target} HTTP/1.1".encode("utf-8", "surrogatepass")]
        head += [f"Host: {host}".encode(), b"Connection: close"]
        head += [f"Content-Length: {len(self.body)}".encode()]
        head += [name.encode() + b": " + value for name, value in self.headers]
        return b"\r\n".join(head) + b"\r\n\r\n" + self.body


@dataclass
class Context:
    """What signed probes need besides the keys: the clock, a counter, web identities."""

    keys: Keys
    now: Callable[[], float]
    sign_user: Callable[[str], str]  # the web identity signature (bot/web/identity.sign)
    link: Callable[[int, int], str]  # the transcript link signature (handoff.state)
    conversation: int  # an existing conversation, for transcript links that open a page
    serial: int = 0

    def next(self) -> int:
        self.serial += 1
        return self.serial


def _headers(rng: random.Random, names: tuple[str, ...]) -> tuple[tuple[str, bytes], ...]:
    """Odd values for the route's own header names, an odd content type, sometimes many."""
    out = [("Content-Type", rng.choice(junk.CONTENT_TYPES).encode("utf-8", "replace"))]
    out += [(n, junk.header_value(rng)) for n in rng.sample(names, rng.randrange(len(names) + 1))]
    if rng.random() < 0.05:
        out += [(f"X-Many-{i}", b"v") for i in range(rng.choice((50, 120)))]
    if rng.random() < 0.1:
        out.append(("Cookie", b"bot_web_id=" + junk.header_value(rng)))
    return tuple(out)


def unsigned(
    rng: random.Random, path: str, method: str, queries: tuple[str, ...], headers: tuple[str, ...]
) -> Probe:
    """Junk anyone can send to `path`: any method, odd query, headers and body."""
    return Probe(
        method=method if rng.random() < 0.6 else rng.choice(junk.METHODS),
        path=path,
        query=junk.query(rng, queries),
        headers=_headers(rng, headers),
        body=junk.body(rng),
    )


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


# --- Web chat and the transcript link --------------------------------------------------------


def signed_chat(rng: random.Random, ctx: Context) -> Probe:
    """A valid web identity with a message of any shape (extra, missing, wrong-typed fields)."""
    user = f"web-fuzz-{rng.randrange(20)}"
    base = {"text": "你好", "user": user, "sig": ctx.sign_user(user), "conversation": "c1"}
    roll = rng.random()
    if roll < 0.8:
        body = json.dumps(junk.mutated(rng, base), ensure_ascii=False).encode()
    elif roll < 0.9:
        body = junk.deep_json(rng.choice((100, 5000)))
    else:
        body = json.dumps({**base, "text": junk.text(rng) * rng.choice((1, 2))}).encode()
    headers: list[tuple[str, bytes]] = [("Content-Type", b"application/json")]
    if rng.random() < 0.3:
        headers.append(("Accept", b"text/event-stream"))
    return Probe("POST", "/api/chat", headers=tuple(headers), body=body, signed=True)


def signed_transcript(rng: random.Random, ctx: Context) -> Probe:
    """A transcript link signed for its conversation, with its parts changed now and then."""
    conv = ctx.conversation if rng.random() < 0.7 else rng.choice((0, 999_999, 10**15))
    exp = int(ctx.now()) + 3600
    params = {"exp": str(exp), "sig": ctx.link(conv, exp)}
    path_id = str(conv)
    roll = rng.random()
    if roll < 0.2:
        params["exp"] = junk.text(rng)
    elif roll < 0.4:
        params["sig"] = junk.text(rng)
    elif roll < 0.5:
        path_id = rng.choice(("١", "0" * 30 + str(conv), "9" * 40, "9" * 5000))
    headers: tuple[tuple[str, bytes], ...] = ()
    if rng.random() < 0.2:
        headers = (("Authorization", b"Bearer " + junk.header_value(rng)),)
    return Probe(
        "GET",
        f"/api/conversations/{path_id}/transcript",
        urlencode(params),
        headers=headers,
        signed=True,
    )


@dataclass(frozen=True)
class Route:
    """One route of the fuzz: its path, method, the names it reads, its signed probes."""

    path: str
    method: str
    queries: tuple[str, ...]
    headers: tuple[str, ...]
    signed: Callable[[random.Random, Context], Probe]

    def probe(self, rng: random.Random, ctx: Context) -> Probe:
        if rng.random() < 0.5:
            return self.signed(rng, ctx)
        return unsigned(rng, self.path, self.method, self.queries, self.headers)


WECHAT_QUERY = ("msg_signature", "signature", "timestamp", "nonce", "echostr", "encrypt_type")
ROUTES = {
    "wecom": Route("/webhooks/wecom", "POST", WECHAT_QUERY, (), signed_wecom),
    "wecom_kf": Route("/webhooks/wecom_kf", "POST", WECHAT_QUERY, (), signed_wecom_kf),
    "wechat_mp": Route(
        "/webhooks/wechat_mp", "POST", (*WECHAT_QUERY, "openid"), (), signed_wechat_mp
    ),
    "dingtalk": Route(
        "/webhooks/dingtalk",
        "POST",
        ("msg_signature", "timeStamp", "nonce"),
        ("timestamp", "sign"),
        signed_dingtalk,
    ),
    "feishu": Route(
        "/webhooks/feishu",
        "POST",
        (),
        ("X-Lark-Signature", "X-Lark-Request-Timestamp", "X-Lark-Request-Nonce"),
        signed_feishu,
    ),
    "web chat": Route(
        "/api/chat", "POST", ("user", "sig"), ("Accept", "X-Forwarded-For"), signed_chat
    ),
    "transcript link": Route(
        "/api/conversations/1/transcript",
        "GET",
        ("exp", "sig"),
        ("Authorization",),
        signed_transcript,
    ),
}
