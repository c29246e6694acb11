"""Fuzzing every webhook parser: whatever arrives, `handle` answers or refuses with a 4xx.

Two kinds of input per platform: bytes and headers anyone can send (refused at the
signature, cheaply), and payloads that pass the signature and the decryption (a holder of
the platform's keys, or a DingTalk robot whose `sign` covers only the timestamp) but whose
content is shaped in every wrong way: a valid payload with one or two values replaced by
values of any JSON type, missing fields, deep nesting, odd XML fields. Anything other than
a `WebhookResult` or a `WebhookError` with a 4xx status is a bug (it would be a 500).

The examples are derived from a fixed seed so CI is repeatable; set
HYPOTHESIS_PROFILE=deep for a longer, random run.
"""

from __future__ import annotations

import copy
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.base import Adapter, WebhookRequest, WebhookResult
from adapters.dingtalk import simulate as dingtalk_simulate
from adapters.feishu import simulate as feishu_simulate
from adapters.wechat import crypto as wechat_crypto
from adapters.wechat_mp import simulate as wechat_mp_simulate
from adapters.wecom import simulate as wecom_simulate
from adapters.wecom_aibot import simulate as aibot_simulate
from adapters.xml import build_xml
from bot.errors import WebhookError
from tests.json_paths import json_paths
from tests.reports import report
from tests.unit.adapters import test_dingtalk as dt
from tests.unit.adapters import test_feishu as fs
from tests.unit.adapters import test_wechat_mp as mp
from tests.unit.adapters import test_wecom as wc
from tests.unit.adapters import test_wecom_aibot as ab
from tests.unit.adapters import test_wecom_kf as kf

settings.register_profile(
    "ci",
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("deep", max_examples=3000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


OUTCOMES: Counter[tuple[str, str]] = Counter()


@pytest.fixture(autouse=True, scope="module")
def _report_counts() -> Iterator[None]:
    yield
    for name in sorted({name for name, _ in OUTCOMES}):
        answered, refused = OUTCOMES[name, "answered"], OUTCOMES[name, "refused"]
        report(
            f"fuzz {name}: {answered + refused} requests, {answered} answered, "
            f"{refused} refused with a 4xx, 0 other outcomes"
        )


def answers_or_refuses(adapter: Adapter, request: WebhookRequest, now: float) -> None:
    name = type(adapter).__name__
    try:
        result: object = adapter.handle(request, now=now)
    except WebhookError as exc:
        result = exc.status
    assert isinstance(result, WebhookResult) or 400 <= result < 500  # type: ignore[operator]
    OUTCOMES[name, "answered" if isinstance(result, WebhookResult) else "refused"] += 1


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """`base` with one to three values replaced by anything, or removed."""
    payload = copy.deepcopy(base)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = json_paths(payload)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = payload
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return payload


def _deep(depth: int) -> bytes:
    """JSON nested deeper than Python's recursion limit."""
    return b'{"event":' * depth + b'"x"' + b"}" * depth


# --- anyone: unsigned bytes, queries and headers ---------------------------------------------

ADAPTERS: dict[str, Callable[[], Adapter]] = {
    "wecom": wc.make_adapter,
    "wecom_kf": kf.make_adapter,
    "wechat_mp": mp.make_adapter,
    "dingtalk": dt.make_adapter,
    "feishu": fs.make_adapter,
    "wecom_aibot": ab.adapter,
}


@given(
    name=st.sampled_from(sorted(ADAPTERS)),
    method=st.sampled_from(["GET", "POST", "PUT"]),
    query=st.dictionaries(
        st.sampled_from(
            [
                "msg_signature",
                "signature",
                "timestamp",
                "nonce",
                "echostr",
                "encrypt_type",
                "openid",
                "x",
            ]
        ),
        HEADER_TEXT,
        max_size=5,
    ),
    headers=st.dictionaries(
        st.sampled_from(
            [
                "timestamp",
                "sign",
                "x-lark-signature",
                "x-lark-request-timestamp",
                "x-lark-request-nonce",
                "content-type",
            ]
        ),
        HEADER_TEXT,
        max_size=4,
    ),
    body=st.binary(max_size=300)
    | st.builds(lambda v: json.dumps(v).encode(), JSON_VALUES)
    | st.just(b"<?xml version='1.0' encoding='UTF-7'?><xml><A>+ADw-</A></xml>")
    | st.just(_deep(5000)),
)
def test_unsigned_requests_are_answered_or_refused(
    name: str, method: str, query: dict[str, str], headers: dict[str, str], body: bytes
) -> None:
    request = WebhookRequest(method=method, query=query, headers=headers, body=body)
    answers_or_refuses(ADAPTERS[name](), request, now=1_700_000_000)


# --- signed and encrypted, content of any shape ------------------------------------------------

FEISHU_MESSAGE = fs.message_event("你好")
FEISHU_CHALLENGE = {"challenge": "c1", "token": fs.TOKEN, "type": "url_verification"}


@given(payload=mutated(FEISHU_MESSAGE) | mutated(FEISHU_CHALLENGE) | JSON_VALUES)
def test_feishu_sealed_payloads_of_any_shape(payload: Any) -> None:
    answers_or_refuses(fs.make_adapter(), fs.sealed(payload), now=fs.NOW)


@given(payload=mutated(FEISHU_MESSAGE) | mutated(FEISHU_CHALLENGE))
def test_feishu_plain_payloads_of_any_shape(payload: dict[str, Any]) -> None:
    headers, body = feishu_simulate.seal(
        payload, encrypt_key="", timestamp=str(fs.NOW), nonce="n", iv=fs.IV
    )
    answers_or_refuses(fs.make_adapter(encrypt_key=""), fs.request(headers, body), now=fs.NOW)


DINGTALK_ROBOT = dt.body("怎么退货")
DINGTALK_GROUP = dingtalk_simulate.robot_body(
    "在吗",
    msg_id="m1",
    staff_id="s1",
    conversation_id="cid1",
    session_webhook=dt.HOOK,
    create_at_ms=dt.NOW_MS,
    group=True,
    msgtype="richText",
    content={"richText": [{"text": "看图"}, {"downloadCode": "d1", "type": "picture"}]},
)


@given(payload=mutated(DINGTALK_ROBOT) | mutated(DINGTALK_GROUP) | JSON_VALUES)
def test_dingtalk_signed_robot_bodies_of_any_shape(payload: Any) -> None:
    # The robot `sign` covers only the timestamp: any body rides on a valid header pair.
    request = (
        dt.robot_request(payload)
        if isinstance(payload, dict)
        else WebhookRequest(
            method="POST",
            query={},
            headers={
                k.lower(): v
                for k, v in dingtalk_simulate.robot_headers(
                    app_secret=dt.SECRET, timestamp_ms=dt.NOW_MS
                ).items()
            },
            body=json.dumps(payload).encode(),
        )
    )
    answers_or_refuses(dt.make_adapter(), request, now=dt.NOW)


DINGTALK_EVENT = {
    "EventType": "chat_add_member",
    "ChatId": "c1",
    "Operator": "u1",
    "UserId": ["u2"],
}


@given(payload=mutated(DINGTALK_EVENT) | mutated({"EventType": "check_url"}))
def test_dingtalk_encrypted_events_of_any_shape(payload: dict[str, Any]) -> None:
    answers_or_refuses(dt.make_adapter(), dt.event_request(payload), now=dt.NOW)


AIBOT_TEXT = aibot_simulate.text_message(
    "@客服 怎么退货", msgid="m1", chatid="wr1", response_url="https://x/r", quote="订单"
)
AIBOT_MIXED = {
    **aibot_simulate.text_message("", msgid="m2"),
    "msgtype": "mixed",
    "mixed": {
        "msg_item": [
            {"msgtype": "text", "text": {"content": "看图"}},
            {"msgtype": "image", "image": {"url": "https://x/i"}},
        ]
    },
}
AIBOT_VOICE = {
    **aibot_simulate.text_message("", msgid="m3"),
    "msgtype": "voice",
    "voice": {"content": "退货"},
}
AIBOT_FEEDBACK = aibot_simulate.event(
    "feedback_event", {"id": "m1", "type": 2, "content": "x"}, msgid="e1", create_time=ab.NOW
)
AIBOT_REFRESH = aibot_simulate.refresh("sid", msgid="r1")


@given(
    payload=mutated(AIBOT_TEXT)
    | mutated(AIBOT_MIXED)
    | mutated(AIBOT_VOICE)
    | mutated(AIBOT_FEEDBACK)
    | mutated(AIBOT_REFRESH)
    | JSON_VALUES
)
def test_wecom_aibot_sealed_json_of_any_shape(payload: Any) -> None:
    if isinstance(payload, dict):
        request = ab.post(payload)
    else:  # not an object at all, still sealed and signed
        encrypted = wechat_crypto.encrypt(
            json.dumps(payload).encode(), aes_key=ab.KEY, receiver_id="", random_prefix=ab.PREFIX
        )
        query = {
            "msg_signature": wechat_crypto.signature(ab.TOKEN, str(ab.NOW), "n", encrypted),
            "timestamp": str(ab.NOW),
            "nonce": "n",
        }
        body = json.dumps({"encrypt": encrypted}).encode()
        request = WebhookRequest("POST", query, {}, body)
    answers_or_refuses(ab.adapter(), request, now=ab.NOW)


WECHAT_FIELDS = st.dictionaries(
    st.sampled_from(
        [
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
            "ThumbMediaId",
            "Location_X",
            "Location_Y",
            "Scale",
            "Label",
            "Title",
            "Url",
            "Token",
            "OpenKfId",
            "ChangeType",
            "UserID",
            "ChatId",
        ]
    ),
    st.text(
        alphabet=st.characters(blacklist_categories=["Cs", "Cc"]) | st.sampled_from("\n\t"),
        max_size=30,
    )
    | st.sampled_from(
        [
            "text",
            "image",
            "voice",
            "video",
            "event",
            "location",
            "link",
            "file",
            "subscribe",
            "enter_agent",
            "kf_msg_or_event",
            "1700000000",
            "99999999999999999999",
            "-1",
            "",
        ]
    ),
    max_size=8,
)


# A valid message underneath: the drawn fields replace or add to it, so the parsers' later
# branches are reached too.
WECHAT_BASE = {
    "ToUserName": "to",
    "FromUserName": "from",
    "CreateTime": "1700000000",
    "MsgType": "text",
    "Content": "你好",
    "MsgId": "1234567890",
}


@given(fields=WECHAT_FIELDS)
def test_wecom_sealed_xml_of_any_fields(fields: dict[str, str]) -> None:
    query, body = wc.sealed(build_xml({**WECHAT_BASE, "AgentID": wc.AGENT, **fields}))
    answers_or_refuses(wc.make_adapter(), WebhookRequest("POST", query, {}, body), now=wc.NOW)


@given(fields=WECHAT_FIELDS)
def test_wecom_kf_sealed_xml_of_any_fields(fields: dict[str, str]) -> None:
    query, body = wecom_simulate.seal(
        build_xml({**WECHAT_BASE, "MsgType": "event", "Event": "kf_msg_or_event", **fields}),
        corp_id=kf.CORP,
        agent_id="",
        token=kf.TOKEN,
        aes_key=kf.KEY_TEXT,
        timestamp=str(kf.NOW),
        nonce="n",
        random_prefix=kf.PREFIX,
    )
    answers_or_refuses(kf.make_adapter(), WebhookRequest("POST", query, {}, body), now=kf.NOW)


@given(fields=WECHAT_FIELDS, encrypted=st.booleans())
def test_wechat_mp_signed_xml_of_any_fields(fields: dict[str, str], encrypted: bool) -> None:
    inner = build_xml({**WECHAT_BASE, **fields})
    if encrypted:
        query, body = mp.safe(inner)
        adapter = mp.make_adapter(aes_key=mp.KEY_TEXT)
    else:
        query, body = wechat_mp_simulate.plain_post(
            inner, token=mp.TOKEN, timestamp=str(mp.NOW), nonce="n1", openid=mp.OPENID
        )
        adapter = mp.make_adapter()
    answers_or_refuses(adapter, mp.request("POST", query, body), now=mp.NOW)
