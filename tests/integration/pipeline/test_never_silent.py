"""Never silent: every platform × message type gets exactly one reply (issue 17's matrix).

Each cell is a real webhook (signed, encrypted where the platform encrypts) posted to the
real web app, queued on real Redis, answered by one real Celery worker for the whole module,
and sent through the platform's fake API, which records it (the WeCom AI bot's answer is the
stream its message opened, refreshed as WeCom does; a second one would come through the
message's response_url, which the fake records too). A message the bot reads (text,
a post, a quote, a transcribed voice) gets the model's answer; any other (a picture without a
vision model, voice without a transcript, a video, a file, a location, a link, a sticker, a
card, a type added later) gets its deliberate polite text. Each cell is its own conversation,
so its reply is found by its recipient; after the last reply the module waits a little
longer so that a second reply to any message would be seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import string
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from adapters.dingtalk import simulate as dingtalk_simulate
from adapters.feishu import simulate as feishu_simulate
from adapters.wechat import crypto
from adapters.wechat_mp import simulate as wechat_mp_simulate
from adapters.wecom import simulate as wecom_simulate
from adapters.wecom_aibot import media as aibot_media
from adapters.wecom_aibot import simulate as aibot_simulate
from adapters.wecom_kf import simulate as wecom_kf_simulate
from bot.domain import Content
from bot.pipeline.autoreply import unsupported_reply
from bot.pipeline.files import problem_reply
from bot.settings import Settings
from tests.conftest import PG_ADMIN_URL, REDIS_URL
from tests.fakes.base import serve
from tests.fakes.dingtalk_api import DingTalkFakeState, make_dingtalk_app
from tests.fakes.feishu_api import FeishuFakeState, make_feishu_app
from tests.fakes.openai_server import LLMFakeState, openai_app
from tests.fakes.wechat_mp_api import WeChatMPFakeState, make_wechat_mp_app
from tests.fakes.wecom_aibot_api import MEDIA_PATH, AiBotFakeState, make_aibot_app
from tests.fakes.wecom_api import WeComFakeState, make_wecom_app
from tests.fakes.wecom_kf_api import WeComKfFakeState, make_wecom_kf_app
from tests.integration.conftest import SAMPLE_KB, SHUTDOWN_TIMEOUT_S
from tests.integration.pictures import error_code_picture

PICTURE = error_code_picture("E-1024", size=(400, 200))


def _key() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(43))


def answer(text: str) -> str:
    """What the fake model answers a question (its echo)."""
    return f"ANSWER: {text}"


def polite(kind: Content) -> str:
    """The deliberate answer to a message the bot cannot read."""
    return unsupported_reply(kind)


# A file the platform would not give (the fakes hold none): the customer is asked to resend.
NO_FILE = problem_reply("failed")


def _aibot_text(text: str) -> dict[str, Any]:
    return {"msgtype": "text", "text": {"content": text}}


@dataclass(frozen=True)
class Cell:
    """One platform × message type: what is sent, and the one reply expected."""

    platform: str
    kind: str
    fields: dict[str, Any]
    expected: str

    @property
    def id(self) -> str:
        return f"{self.platform}-{self.kind}"

    @property
    def user(self) -> str:
        # Its own conversation (and message id) on every platform.
        return f"u{self.platform.replace('_', '')}{self.kind.replace('_', '')}"


CELLS: list[Cell] = [
    # WeCom self-built app: 接收普通消息 types (a picture is fetched through media/get).
    Cell("wecom", "text", {"MsgType": "text", "Content": "怎么退货"}, answer("怎么退货")),
    Cell(
        "wecom",
        "image",
        {"MsgType": "image", "PicUrl": "https://wework.qpic.cn/p", "MediaId": "MEDIA_PIC"},
        polite(Content.IMAGE),
    ),
    Cell(
        "wecom",
        "voice",
        {"MsgType": "voice", "MediaId": "M2", "Format": "amr"},
        polite(Content.VOICE),
    ),
    Cell(
        "wecom",
        "video",
        {"MsgType": "video", "MediaId": "M3", "ThumbMediaId": "T3"},
        polite(Content.VIDEO),
    ),
    Cell(
        "wecom",
        "location",
        {
            "MsgType": "location",
            "Location_X": "22.5",
            "Location_Y": "113.9",
            "Scale": "15",
            "Label": "深圳",
        },
        polite(Content.LOCATION),
    ),
    Cell(
        "wecom",
        "link",
        {
            "MsgType": "link",
            "Title": "订单",
            "Description": "d",
            "Url": "https://x.example/o",
            "PicUrl": "",
        },
        polite(Content.LINK),
    ),
    Cell("wecom", "unknown", {"MsgType": "mixed"}, polite(Content.OTHER)),
    # 微信客服: pulled through kf/sync_msg.
    Cell(
        "wecom_kf", "text", {"msgtype": "text", "text": {"content": "多久发货"}}, answer("多久发货")
    ),
    Cell(
        "wecom_kf",
        "image",
        {"msgtype": "image", "image": {"media_id": "K1"}},
        polite(Content.IMAGE),
    ),
    Cell(
        "wecom_kf",
        "voice",
        {"msgtype": "voice", "voice": {"media_id": "K2"}},
        polite(Content.VOICE),
    ),
    Cell(
        "wecom_kf",
        "video",
        {"msgtype": "video", "video": {"media_id": "K3"}},
        polite(Content.VIDEO),
    ),
    # Files are fetched to be read (bot/pipeline/files.py); these fakes have none to give.
    Cell("wecom_kf", "file", {"msgtype": "file", "file": {"media_id": "K4"}}, NO_FILE),
    Cell(
        "wecom_kf",
        "location",
        {
            "msgtype": "location",
            "location": {"latitude": 23.1, "longitude": 113.3, "name": "广州塔"},
        },
        polite(Content.LOCATION),
    ),
    Cell(
        "wecom_kf",
        "link",
        {"msgtype": "link", "link": {"title": "t", "url": "https://x.example"}},
        polite(Content.LINK),
    ),
    Cell(
        "wecom_kf",
        "business_card",
        {"msgtype": "business_card", "business_card": {"userid": "zhangsan"}},
        polite(Content.CARD),
    ),
    Cell(
        "wecom_kf",
        "miniprogram",
        {"msgtype": "miniprogram", "miniprogram": {"title": "店"}},
        polite(Content.MINIPROGRAM),
    ),
    Cell("wecom_kf", "unknown", {"msgtype": "channels_shop_product"}, polite(Content.OTHER)),
    # DingTalk robot (HTTP mode), answered on the message's sessionWebhook.
    Cell("dingtalk", "text", {"msgtype": "text", "text": "发票怎么开"}, answer("发票怎么开")),
    Cell(
        "dingtalk",
        "image",
        {"msgtype": "picture", "content": {"downloadCode": "DL_PIC"}},
        polite(Content.IMAGE),
    ),
    Cell(
        "dingtalk",
        "voice_transcribed",
        {
            "msgtype": "audio",
            "content": {"duration": 2000, "downloadCode": "DL_V", "recognition": "我要退货"},
        },
        answer("我要退货"),
    ),
    Cell(
        "dingtalk",
        "voice",
        {"msgtype": "audio", "content": {"duration": 2000, "downloadCode": "DL_V2"}},
        polite(Content.VOICE),
    ),
    Cell(
        "dingtalk",
        "video",
        {
            "msgtype": "video",
            "content": {"downloadCode": "DL_VID", "duration": 5, "videoType": "mp4"},
        },
        polite(Content.VIDEO),
    ),
    Cell(
        "dingtalk",
        "file",
        {"msgtype": "file", "content": {"downloadCode": "DL_F", "fileName": "合同.pdf"}},
        NO_FILE,
    ),
    Cell(
        "dingtalk",
        "rich",
        {
            "msgtype": "richText",
            "content": {
                "richText": [{"text": "这个坏了"}, {"type": "picture", "downloadCode": "DL_PIC"}]
            },
        },
        answer("这个坏了"),
    ),
    Cell(
        "dingtalk",
        "rich_pictures",
        {
            "msgtype": "richText",
            "content": {"richText": [{"type": "picture", "downloadCode": "DL_PIC"}]},
        },
        polite(Content.IMAGE),
    ),
    Cell(
        "dingtalk",
        "unknown",
        {"msgtype": "interactiveCard", "content": {"cardData": "{}"}},
        polite(Content.OTHER),
    ),
    # Feishu: im.message.receive_v1 message types (a picture is fetched from its resources).
    Cell(
        "feishu",
        "text",
        {"message_type": "text", "content": {"text": "怎么改地址"}},
        answer("怎么改地址"),
    ),
    Cell(
        "feishu",
        "rich",
        {
            "message_type": "post",
            "content": {
                "title": "退款",
                "content": [
                    [
                        {"tag": "text", "text": "多久到账"},
                        {"tag": "emotion", "emoji_type": "SMILE"},
                    ],
                    [{"tag": "img", "image_key": "img_pic"}],
                ],
            },
        },
        answer("退款\n多久到账[SMILE]"),
    ),
    Cell(
        "feishu",
        "quoted",
        {
            "message_type": "text",
            "content": {"text": "这个呢"},
            "parent_id": "om_earlier",
            "root_id": "om_earlier",
        },
        answer("这个呢\n（引用：订单 123 什么时候发货？）"),
    ),
    Cell(
        "feishu",
        "quoted_unreadable",  # the quoted message cannot be read: the reply is asked alone
        {"message_type": "text", "content": {"text": "还有这个"}, "parent_id": "om_gone"},
        answer("还有这个"),
    ),
    Cell(
        "feishu",
        "image",
        {"message_type": "image", "content": {"image_key": "img_pic"}},
        polite(Content.IMAGE),
    ),
    Cell(
        "feishu",
        "rich_pictures",
        {
            "message_type": "post",
            "content": {"title": "", "content": [[{"tag": "img", "image_key": "img_pic"}]]},
        },
        polite(Content.IMAGE),
    ),
    Cell(
        "feishu",
        "voice",
        {"message_type": "audio", "content": {"file_key": "f1", "duration": 2000}},
        polite(Content.VOICE),
    ),
    Cell(
        "feishu",
        "video",
        {
            "message_type": "media",
            "content": {
                "file_key": "f2",
                "image_key": "i2",
                "file_name": "a.mp4",
                "duration": 3000,
            },
        },
        polite(Content.VIDEO),
    ),
    Cell(
        "feishu",
        "file",
        {"message_type": "file", "content": {"file_key": "f3", "file_name": "发票.pdf"}},
        NO_FILE,
    ),
    Cell(
        "feishu",
        "sticker",
        {"message_type": "sticker", "content": {"file_key": "s1"}},
        polite(Content.STICKER),
    ),
    Cell(
        "feishu",
        "location",
        {
            "message_type": "location",
            "content": {"name": "公司", "longitude": "116.4", "latitude": "39.9"},
        },
        polite(Content.LOCATION),
    ),
    Cell(
        "feishu",
        "card",
        {"message_type": "share_user", "content": {"user_id": "ou_x"}},
        polite(Content.CARD),
    ),
    Cell(
        "feishu", "unknown", {"message_type": "merge_forward", "content": {}}, polite(Content.OTHER)
    ),
    # WeChat Official Account (safe mode); passive replies off, so every answer is sent.
    Cell("wechat_mp", "text", {"MsgType": "text", "Content": "营业时间"}, answer("营业时间")),
    Cell(
        "wechat_mp",
        "image",
        {"MsgType": "image", "PicUrl": "http://mmbiz.qpic.cn/p", "MediaId": "MP1"},
        polite(Content.IMAGE),
    ),
    Cell(
        "wechat_mp",
        "voice_transcribed",
        {"MsgType": "voice", "MediaId": "MP2", "Format": "amr", "Recognition": "怎么退货"},
        answer("怎么退货"),
    ),
    Cell(
        "wechat_mp",
        "voice",
        {"MsgType": "voice", "MediaId": "MP3", "Format": "amr"},
        polite(Content.VOICE),
    ),
    Cell(
        "wechat_mp",
        "video",
        {"MsgType": "video", "MediaId": "MP4", "ThumbMediaId": "T"},
        polite(Content.VIDEO),
    ),
    Cell(
        "wechat_mp",
        "shortvideo",
        {"MsgType": "shortvideo", "MediaId": "MP5", "ThumbMediaId": "T"},
        polite(Content.VIDEO),
    ),
    Cell(
        "wechat_mp",
        "location",
        {
            "MsgType": "location",
            "Location_X": "23.1",
            "Location_Y": "113.3",
            "Scale": "20",
            "Label": "广州",
        },
        polite(Content.LOCATION),
    ),
    Cell(
        "wechat_mp",
        "link",
        {"MsgType": "link", "Title": "文章", "Description": "d", "Url": "https://x.example"},
        polite(Content.LINK),
    ),
    # WeCom 智能机器人 (webhook mode): each answer is the stream its message opened, refreshed
    # as WeCom does; "{media}" is the fake resource server, whose files are encrypted.
    Cell("wecom_aibot", "text", _aibot_text("怎么退货"), answer("怎么退货")),
    Cell(
        "wecom_aibot",
        "group_text",
        {**_aibot_text("@客服 发票抬头怎么改"), "chattype": "group"},
        answer("发票抬头怎么改"),
    ),
    Cell(
        "wecom_aibot",
        "quote",
        {
            **_aibot_text("这个怎么退？"),
            "quote": {"msgtype": "text", "text": {"content": "订单 A123 已签收"}},
        },
        answer("这个怎么退？\n（引用：订单 A123 已签收）"),
    ),
    Cell(
        "wecom_aibot",
        "mixed",
        {
            "msgtype": "mixed",
            "mixed": {
                "msg_item": [
                    {"msgtype": "text", "text": {"content": "这个多少钱"}},
                    {"msgtype": "image", "image": {"url": "{media}/pic"}},
                ]
            },
        },
        answer("这个多少钱\n[图片]"),
    ),
    Cell(
        "wecom_aibot",
        "image",
        {"msgtype": "image", "image": {"url": "{media}/pic"}},
        polite(Content.IMAGE),
    ),
    # WeCom sends its own transcript of a voice message, never the recording.
    Cell(
        "wecom_aibot",
        "voice",
        {"msgtype": "voice", "voice": {"content": "快递到哪了"}},
        answer("快递到哪了"),
    ),
    Cell(
        "wecom_aibot",
        "voice_silent",
        {"msgtype": "voice", "voice": {"content": ""}},
        polite(Content.VOICE),
    ),
    Cell("wecom_aibot", "file", {"msgtype": "file", "file": {"url": "{media}/gone"}}, NO_FILE),
    Cell(
        "wecom_aibot",
        "video",
        {"msgtype": "video", "video": {"url": "{media}/v"}},
        polite(Content.VIDEO),
    ),
    Cell(
        "wecom_aibot",
        "unknown",
        {"msgtype": "location", "location": {"latitude": 23.1}},
        polite(Content.OTHER),
    ),
]


@dataclass
class Stack:
    """The module's fakes, settings and app credentials."""

    vllm: LLMFakeState
    wecom: WeComFakeState
    kf: WeComKfFakeState
    dingtalk: DingTalkFakeState
    feishu: FeishuFakeState
    mp: WeChatMPFakeState
    aibot: AiBotFakeState = field(default_factory=AiBotFakeState)
    aibot_keys: dict[str, str] = field(default_factory=dict)
    # The finished stream of each AI bot cell, and which cell each response_url belongs to.
    aibot_streams: dict[str, str] = field(default_factory=dict)
    aibot_codes: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    wecom_keys: dict[str, str] = field(default_factory=dict)
    kf_keys: dict[str, str] = field(default_factory=dict)
    mp_keys: dict[str, str] = field(default_factory=dict)

    def settings(self, data_dir: Path, database_url: str) -> Settings:
        return Settings.load(
            None,
            core={
                "redis_url": REDIS_URL,
                "database_url": database_url,
                "data_dir": data_dir,
                "knowledge_dir": SAMPLE_KB,
                "faq_direct_score": 1.01,  # the model answers, so its echo names the question
                "burst_window_s": 0,
                "mp_passive_wait_s": 0,  # every answer goes through the customer-service API
            },
            vllm={"base_url": f"{self.urls['vllm']}/v1", "model": self.vllm.model, "timeout_s": 5},
            wecom={**self.wecom_keys, "agent_id": "1000002", "api_base": self.urls["wecom"]},
            wecom_kf={**self.kf_keys, "WECOM_API_BASE": self.urls["kf"]},
            dingtalk={
                "app_key": self.dingtalk.app_key,
                "app_secret": self.dingtalk.app_secret,
                "robot_code": self.dingtalk.robot_code,
                "api_base": self.urls["dingtalk"],
                "oapi_base": "http://127.0.0.1",  # the fake sessionWebhook's host
            },
            feishu={
                "app_id": self.feishu.app_id,
                "app_secret": self.feishu.app_secret,
                "verification_token": "feishu-matrix-token",
                "encrypt_key": "feishu matrix key",
                "api_base": self.urls["feishu"],
                "bot_open_id": "ou_bot",
            },
            wechat_mp={**self.mp_keys, "WECHAT_API_BASE": self.urls["mp"]},
            wecom_aibot={**self.aibot_keys, "media_hosts": self.urls["aibot"]},
        )


def _msg_id(cell: Cell) -> str:
    return str(10**17 + CELLS.index(cell))


async def _wecom(client: TestClient, cell: Cell, stack: Stack) -> None:
    now = int(time.time())
    keys = stack.wecom_keys
    inner = {
        "ToUserName": keys["corp_id"],
        "FromUserName": cell.user,
        "CreateTime": now,
        "AgentID": 1000002,
        "MsgId": _msg_id(cell),
        **cell.fields,
    }
    query, body = wecom_simulate.build_post(
        inner,
        corp_id=keys["corp_id"],
        agent_id="1000002",
        token=keys["token"],
        aes_key=keys["aes_key"],
        timestamp=str(now),
        nonce=secrets.token_hex(4),
        random_prefix=os.urandom(16),
    )
    resp = await client.post("/webhooks/wecom", params=query, data=body)
    assert resp.status == 200, await resp.text()


async def _dingtalk(client: TestClient, cell: Cell, stack: Stack) -> None:
    fields = dict(cell.fields)
    text = fields.pop("text", "")
    body = dingtalk_simulate.robot_body(
        text,
        msg_id=f"msg{cell.user}==",
        staff_id=cell.user,
        conversation_id=f"cid{cell.user}==",
        session_webhook=stack.dingtalk.session_url(stack.urls["dingtalk"], cell.user),
        create_at_ms=int(time.time() * 1000),
        robot_code=stack.dingtalk.robot_code,
        **fields,
    )
    # A robot's signature covers only its timestamp, so each may carry one message: one
    # millisecond apart.
    stamp = int(time.time() * 1000) + CELLS.index(cell)
    headers = dingtalk_simulate.robot_headers(
        app_secret=stack.dingtalk.app_secret, timestamp_ms=stamp
    )
    resp = await client.post("/webhooks/dingtalk", data=json.dumps(body), headers=headers)
    assert resp.status == 200, await resp.text()


async def _feishu(client: TestClient, cell: Cell, stack: Stack) -> None:
    now = int(time.time())
    fields = dict(cell.fields)
    event = feishu_simulate.text_event(
        "",
        user_open_id=cell.user,
        message_id=f"om_{cell.user}",
        chat_id=f"oc_{cell.user}",
        create_time_ms=now * 1000,
    )
    event["message"].update(fields, content=json.dumps(fields["content"], ensure_ascii=False))
    payload = feishu_simulate.envelope(
        "im.message.receive_v1",
        event,
        app_id=stack.feishu.app_id,
        verification_token="feishu-matrix-token",
        event_id=uuid.uuid4().hex,
        create_time_ms=now * 1000,
    )
    headers, body = feishu_simulate.seal(
        payload,
        encrypt_key="feishu matrix key",
        timestamp=str(now),
        nonce=secrets.token_hex(4),
        iv=os.urandom(16),
    )
    resp = await client.post("/webhooks/feishu", data=body, headers=headers)
    assert resp.status == 200, await resp.text()


async def _wechat_mp(client: TestClient, cell: Cell, stack: Stack) -> None:
    fields = {k: v for k, v in cell.fields.items() if k != "MsgType"}
    xml = wechat_mp_simulate.message_xml(
        cell.fields["MsgType"],
        from_user=cell.user,
        to_user="gh_matrix",
        create_time=int(time.time()),
        MsgId=_msg_id(cell),
        **fields,
    )
    keys = stack.mp_keys
    query, body = wechat_mp_simulate.safe_post(
        xml,
        to_user="gh_matrix",
        token=keys["token"],
        aes_key=keys["aes_key"],
        app_id=keys["app_id"],
        timestamp=str(int(time.time())),
        nonce=secrets.token_hex(4),
        openid=cell.user,
        random_prefix=os.urandom(16),
    )
    resp = await client.post("/webhooks/wechat_mp", params=query, data=body)
    assert resp.status == 200, await resp.text()


async def _kf_pull(client: TestClient, stack: Stack) -> None:
    now = int(time.time())
    keys = stack.kf_keys
    query, body = wecom_kf_simulate.build_callback(
        corp_id=keys["WECOM_CORP_ID"],
        token=keys["token"],
        aes_key=keys["aes_key"],
        sync_token=stack.kf.new_sync_token(),
        open_kfid=stack.kf.open_kfid,
        create_time=now,
        timestamp=str(now),
        nonce=secrets.token_hex(4),
        random_prefix=os.urandom(16),
    )
    resp = await client.post("/webhooks/wecom_kf", params=query, data=body)
    assert resp.status == 200, await resp.text()


async def _aibot(client: TestClient, cell: Cell, stack: Stack) -> None:
    """Post the message, then refresh its stream as WeCom does until it is finished."""
    keys = stack.aibot_keys
    fields = json.loads(
        json.dumps(cell.fields).replace("{media}", stack.urls["aibot"] + MEDIA_PATH)
    )
    group = fields.get("chattype") == "group"
    response_url = stack.aibot.issue()
    stack.aibot_codes[response_url.rsplit("=", 1)[1]] = cell.id
    data = {
        "msgid": f"aibot{cell.user}",
        "aibotid": "AIBOTID",
        "chattype": "single",
        "from": {"userid": cell.user},
        "response_url": response_url,
        **({"chatid": f"grp{cell.user}"} if group else {}),
        **fields,
    }

    async def post(callback: dict[str, Any]) -> dict[str, Any]:
        query, body = aibot_simulate.build_post(
            callback,
            token=keys["token"],
            aes_key=keys["aes_key"],
            timestamp=str(int(time.time())),
            nonce=secrets.token_hex(4),
            random_prefix=os.urandom(16),
        )
        resp = await client.post("/webhooks/wecom_aibot", params=query, data=body)
        assert resp.status == 200, await resp.text()
        return aibot_simulate.open_reply(await resp.read(), **keys)

    sid = (await post(data))["stream"]["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        shown = (await post(aibot_simulate.refresh(sid, msgid=secrets.token_hex(8))))["stream"]
        if shown["finish"]:
            stack.aibot_streams[cell.id] = str(shown["content"])
            return


def replies(stack: Stack) -> dict[str, list[str]]:
    """Every reply the fakes recorded, by the cell it answers."""
    found: dict[str, list[str]] = {}
    by_user = {c.user: c.id for c in CELLS}
    for m in stack.wecom.sent:
        found.setdefault(by_user.get(m["touser"], m["touser"]), []).append(m["content"])
    for m in stack.kf.sent:
        found.setdefault(by_user.get(m["touser"], m["touser"]), []).append(m["content"])
    for m in stack.dingtalk.sent:
        found.setdefault(by_user.get(m.get("session", ""), "?"), []).append(m["text"])
    for m in stack.feishu.sent:
        user = str(m.get("reply_to", "")).removeprefix("om_")
        found.setdefault(by_user.get(user, user), []).append(m["text"])
    for m in stack.mp.sent:
        found.setdefault(by_user.get(m["touser"], m["touser"]), []).append(m["content"])
    for cell_id, content in stack.aibot_streams.items():
        found.setdefault(cell_id, []).append(content)
    for m in stack.aibot.answers:  # a second answer would come through response_url
        found.setdefault(stack.aibot_codes.get(m["code"], "?"), []).append(m["content"])
    return found


async def _run_all(settings: Settings, stack: Stack) -> dict[str, list[str]]:
    from bot.web.app import create_app

    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        posts = {
            "wecom": _wecom,
            "dingtalk": _dingtalk,
            "feishu": _feishu,
            "wechat_mp": _wechat_mp,
            "wecom_aibot": _aibot,
        }
        for cell in CELLS:
            if cell.platform == "wecom_kf":
                stack.kf.add(external_userid=cell.user, **cell.fields)
        await asyncio.gather(
            _kf_pull(client, stack),
            *(posts[c.platform](client, c, stack) for c in CELLS if c.platform in posts),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum(len(v) for v in replies(stack).values()) >= len(CELLS):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # a second reply to any message would arrive by now
        return replies(stack)
    finally:
        await client.close()


@contextlib.contextmanager
def _database(template: str) -> Iterator[str]:
    name = f"bot_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        from bot.db.engine import dispose_all

        dispose_all()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory, _pg_template: str) -> Iterator[dict[str, Any]]:
    """Post every cell through one web app and one worker; the replies, by cell."""
    from celery.contrib.testing.worker import start_worker

    from bot.llm import breaker
    from workers.celery_app import app, configure

    store = redis.Redis.from_url(REDIS_URL)
    store.flushdb()
    wecom_keys = {
        "corp_id": "wwmatrix",
        "secret": "wecom-secret",
        "token": "wecom-token",
        "aes_key": _key(),
    }
    kf_keys = {
        "WECOM_CORP_ID": "wwmatrixkf",
        "secret": "kf-secret",
        "token": "kf-token",
        "aes_key": _key(),
    }
    mp_keys = {
        "app_id": "wxmatrix0001",
        "app_secret": "mp-secret",
        "token": "mp-token",
        "aes_key": _key(),
    }
    stack = Stack(
        vllm=LLMFakeState(model="qwen-test"),
        wecom=WeComFakeState(corp_id=wecom_keys["corp_id"], secret=wecom_keys["secret"]),
        kf=WeComKfFakeState(
            corp_id=kf_keys["WECOM_CORP_ID"], secret=kf_keys["secret"], page_size=1000
        ),
        dingtalk=DingTalkFakeState(app_secret=secrets.token_urlsafe(16)),
        feishu=FeishuFakeState(app_id="cli_matrix", app_secret=secrets.token_urlsafe(16)),
        mp=WeChatMPFakeState(app_id=mp_keys["app_id"], secret=mp_keys["app_secret"]),
        wecom_keys=wecom_keys,
        kf_keys=kf_keys,
        mp_keys=mp_keys,
        aibot_keys={"token": "aibot-token", "aes_key": _key()},
    )
    aes = crypto.decode_aes_key(stack.aibot_keys["aes_key"])
    stack.aibot.add_file("pic", aibot_media.encrypt_file(PICTURE, aes))
    stack.wecom.add_media("MEDIA_PIC", PICTURE, "image/png")
    stack.dingtalk.add_media("DL_PIC", PICTURE, "image/png")
    stack.kf.media["K1"] = (PICTURE, "image/png")
    stack.feishu.messages["om_earlier"] = ("text", json.dumps({"text": "订单 123 什么时候发货？"}))
    stack.mp.media["MP1"] = (PICTURE, "image/png")
    for user in ("ufeishuimage", "ufeishurich", "ufeishurichpictures"):
        stack.feishu.add_resource(f"om_{user}", "img_pic", PICTURE)
    with contextlib.ExitStack() as running:
        apps = {
            "vllm": openai_app(stack.vllm),
            "wecom": make_wecom_app(stack.wecom),
            "kf": make_wecom_kf_app(stack.kf),
            "dingtalk": make_dingtalk_app(stack.dingtalk),
            "feishu": make_feishu_app(stack.feishu),
            "mp": make_wechat_mp_app(stack.mp),
            "aibot": make_aibot_app(stack.aibot),
        }
        stack.urls = {name: running.enter_context(serve(fake)) for name, fake in apps.items()}
        stack.aibot.base_url = stack.urls["aibot"]
        url = running.enter_context(_database(_pg_template))
        settings = stack.settings(tmp_path_factory.mktemp("matrix") / "data", url)
        configure(settings)
        running.enter_context(
            start_worker(
                app,
                pool="workers.pool:AsyncPool",
                concurrency=8,
                perform_ping_check=False,
                loglevel="WARNING",
                shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            )
        )
        found = asyncio.run(_run_all(settings, stack))
        yield {"replies": found, "stack": stack}
    breaker.reset_all()
    store.flushdb()
    store.close()


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_each_message_gets_exactly_one_reply(matrix: dict[str, Any], cell: Cell) -> None:
    assert matrix["replies"].get(cell.id, []) == [cell.expected]


def test_no_reply_went_to_anyone_else(matrix: dict[str, Any]) -> None:
    strays = {k: v for k, v in matrix["replies"].items() if k not in {c.id for c in CELLS}}
    assert strays == {}


def test_pictures_were_fetched_through_the_platforms_media_apis(matrix: dict[str, Any]) -> None:
    stack: Stack = matrix["stack"]
    fetches = (
        (stack.wecom, ["M2", "MEDIA_PIC"]),
        (stack.kf, ["K1", "K2", "K4"]),
        (stack.mp, ["MP1", "MP3"]),
    )
    for fake, media_ids in fetches:  # pictures, files and voice without a transcript
        got = sorted(r.query["media_id"] for r in fake.matching("/cgi-bin/media/get"))
        assert got == media_ids
    codes = sorted(
        r.json["downloadCode"] for r in stack.dingtalk.matching("/messageFiles/download")
    )
    assert codes == ["DL_F", "DL_PIC", "DL_PIC", "DL_PIC", "DL_V2", "DL_VID"]
    fetched = sorted(r.path for r in stack.feishu.requests if "/resources/" in r.path)
    assert fetched == [
        "/open-apis/im/v1/messages/om_ufeishufile/resources/f3",
        *(
            f"/open-apis/im/v1/messages/om_{user}/resources/img_pic"
            for user in ("ufeishuimage", "ufeishurich", "ufeishurichpictures")
        ),
        "/open-apis/im/v1/messages/om_ufeishuvoice/resources/f1",  # Opus, for speech recognition
    ]
    # The AI bot's encrypted resources: the picture and the mixed message's, the missing file.
    got = sorted(r.path for r in stack.aibot.requests if r.path.startswith(MEDIA_PATH))
    assert got == [f"{MEDIA_PATH}/gone", f"{MEDIA_PATH}/pic", f"{MEDIA_PATH}/pic"]
    # Only what a person typed or said reached the model; placeholders never did.
    asked = {r.json["messages"][-1]["content"] for r in stack.vllm.matching("/chat/completions")}
    assert asked == {c.expected.removeprefix("ANSWER: ") for c in CELLS if "ANSWER" in c.expected}
