"""微信客服 end to end: callback → worker pulls kf/sync_msg from the saved cursor → one answer
per customer message through kf/send_msg; plus the client's errcode handling against the fake.

Real HTTP with real signatures and AES, real Redis, a real Celery worker (thread pool);
the 微信客服 API and both model backends are fake servers on loopback.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from sqlmodel import Session, select

from adapters.tokens import TokenCache
from adapters.wecom_kf import simulate as wecom_kf_simulate
from adapters.wecom_kf.adapter import WeComKfAdapter
from bot import keys
from bot.agent.agent import WELCOME_TEXT
from bot.db.engine import get_engine
from bot.db.models import Delivery
from bot.domain import Platform, Reply
from bot.errors import PlatformRejectedError, PlatformUnavailableError
from tests.fakes.base import serve
from tests.fakes.wecom_kf_api import WeComKfFakeState, make_wecom_kf_app
from tests.integration.conftest import wait_for

OPEN_KFID = "wkTESTopenKfId0001"
USER = "wmCustomerA"


@dataclass
class KfApp:
    corp_id: str
    secret: str
    token: str
    aes_key: str

    def section(self, api_base: str) -> dict[str, str]:
        return {
            "WECOM_CORP_ID": self.corp_id,
            "secret": self.secret,
            "token": self.token,
            "aes_key": self.aes_key,
            "WECOM_API_BASE": api_base,
        }

    def callback(self, sync_token: str) -> tuple[dict[str, str], bytes]:
        now = int(time.time())
        return wecom_kf_simulate.build_callback(
            corp_id=self.corp_id,
            token=self.token,
            aes_key=self.aes_key,
            sync_token=sync_token,
            open_kfid=OPEN_KFID,
            create_time=now,
            timestamp=str(now),
            nonce=str(secrets.randbelow(10**9)),
            random_prefix=os.urandom(16),
        )


@pytest.fixture
def kf_app() -> KfApp:
    alphabet = string.ascii_letters + string.digits
    return KfApp(
        corp_id="wwkf" + secrets.token_hex(4),
        secret=secrets.token_urlsafe(16),
        token=secrets.token_urlsafe(8),
        aes_key="".join(secrets.choice(alphabet) for _ in range(43)),
    )


@pytest.fixture
def kf_api(kf_app: KfApp) -> Iterator[tuple[WeComKfFakeState, str]]:
    state = WeComKfFakeState(
        corp_id=kf_app.corp_id, secret=kf_app.secret, open_kfid=OPEN_KFID, page_size=2
    )
    with serve(make_wecom_kf_app(state)) as url:
        yield state, url


@pytest.fixture
async def stack(make_settings, make_client, celery_worker, fakes, wecom_app, kf_app, kf_api):
    """Web app + in-process worker wired to the fakes; returns (client, settings)."""
    sections = {k: v for k, v in fakes.sections(wecom_app).items() if k != "wecom"}
    settings = make_settings(**sections, wecom_kf=kf_app.section(kf_api[1]))
    client = await make_client(settings)
    celery_worker(settings)
    return client, settings


async def _callback(client, kf_app: KfApp, sync_token: str) -> None:
    query, body = kf_app.callback(sync_token)
    resp = await client.post("/webhooks/wecom_kf", params=query, data=body)
    assert resp.status == 200, await resp.text()
    assert await resp.read() == b""


async def test_a_callback_answers_every_customer_message_once_and_keeps_the_cursor(
    stack, kf_app, kf_api, aredis
) -> None:
    client, _ = stack
    kf, _ = kf_api
    first = kf.text(USER, "问题1")
    kf.text(USER, "问题2")
    kf.add(origin=5, servicer_userid="zhangsan", external_userid=USER, msgtype="text",
           text={"content": "人工客服的话"})  # fmt: skip
    kf.text(USER, "问题3")
    token = kf.new_sync_token()
    await _callback(client, kf_app, token)
    await wait_for(lambda: len(kf.sent) == 3)
    assert [(m["touser"], m["content"]) for m in kf.sent] == [
        (USER, "ANSWER: 问题1"),
        (USER, "ANSWER: 问题2"),
        (USER, "ANSWER: 问题3"),
    ]
    # Two pages of two, the second asked for with the first page's cursor.
    assert kf.cursors_seen == ["", "cur-2"]
    assert await aredis.get(keys.kf_cursor("default", OPEN_KFID)) == b"cur-4"
    assert all(r.json["token"] == token for r in kf.matching("/kf/sync_msg"))

    # WeCom retries the same callback: deduplicated at the edge, no second pull.
    await _callback(client, kf_app, token)
    await asyncio.sleep(1.0)
    assert kf.cursors_seen == ["", "cur-2"]

    # A new callback starts from the saved cursor; an already-seen msgid is not answered again.
    kf.text(USER, "问题4")
    kf.text(USER, "问题1", msgid=first["msgid"])
    await _callback(client, kf_app, kf.new_sync_token())
    await wait_for(lambda: len(kf.sent) == 4)
    await asyncio.sleep(1.5)
    assert kf.cursors_seen == ["", "cur-2", "cur-4"]
    assert [m["content"] for m in kf.sent][3:] == ["ANSWER: 问题4"]
    assert await aredis.get(keys.kf_cursor("default", OPEN_KFID)) == b"cur-6"


async def test_non_text_customer_messages_get_a_polite_text_answer(
    stack, kf_app, kf_api, fakes
) -> None:
    from bot.pipeline.autoreply import VOICE_REPLY

    client, _ = stack
    kf, _ = kf_api
    kf.add(external_userid="wmImage", msgtype="image", image={"media_id": "MEDIA1"})
    kf.add(external_userid="wmVoice", msgtype="voice", voice={"media_id": "MEDIA2"})
    kf.add(external_userid="wmPlace", msgtype="location",
           location={"latitude": 23.1, "longitude": 113.3, "name": "广州塔"})  # fmt: skip
    await _callback(client, kf_app, kf.new_sync_token())
    await wait_for(lambda: len(kf.sent) == 3)
    answers = {m["touser"]: m["content"] for m in kf.sent}
    assert answers == {
        "wmImage": "抱歉，我暂时还看不了图片，请用文字描述您的问题，我会马上为您解答。",
        "wmVoice": VOICE_REPLY,
        "wmPlace": "抱歉，我暂时还看不了位置信息，请用文字描述您的问题，我会马上为您解答。",
    }
    assert fakes.vllm.matching("/chat/completions") == []


async def test_enter_session_is_welcomed_with_the_welcome_code(stack, kf_app, kf_api) -> None:
    client, _ = stack
    kf, _ = kf_api
    kf.enter_session(USER, "WELCOMEcode123")
    kf.add(origin=4, msgtype="event", event={"event_type": "session_status_change",
           "open_kfid": OPEN_KFID, "external_userid": USER, "change_type": 1})  # fmt: skip
    await _callback(client, kf_app, kf.new_sync_token())
    await wait_for(lambda: len(kf.welcomes) == 1)
    await asyncio.sleep(1.0)
    assert kf.welcomes[0]["code"] == "WELCOMEcode123"
    assert kf.welcomes[0]["content"] == WELCOME_TEXT
    assert kf.sent == []


async def test_a_refused_reply_is_recorded_not_retried(stack, kf_app, kf_api) -> None:
    client, settings = stack
    kf, _ = kf_api
    kf.text(USER, "还在吗")
    # The answer comes after the 48 h window / 5-reply limit: the send is refused for good.
    token = kf.new_sync_token()
    refused = {"errcode": 95018, "errmsg": "send msg limit"}

    # gettoken and sync_msg go first; the third call (send_msg) is refused.
    async def refuse_the_send() -> None:
        await wait_for(lambda: len(kf.matching("/kf/sync_msg")) == 1)
        kf.fail_next(1, status=200, body=refused)

    kf.delay_s = 0.3  # leave time to arm the failure between sync_msg and send_msg
    watcher = asyncio.create_task(refuse_the_send())
    await _callback(client, kf_app, token)
    await watcher
    engine = get_engine(settings.core.effective_database_url())

    def failed() -> bool:
        with Session(engine) as s:
            return [d.status for d in s.exec(select(Delivery)).all()] == ["failed"]

    await wait_for(failed)
    await asyncio.sleep(1.0)
    assert len(kf.matching("/kf/send_msg")) == 1
    assert kf.sent == []


# --- the client alone, against the fake --------------------------------------------------


@pytest.fixture
async def client_parts(kf_app, kf_api, aredis) -> Any:
    kf, url = kf_api
    adapter = WeComKfAdapter(
        corp_id=kf_app.corp_id,
        token=kf_app.token,
        aes_key=kf_app.aes_key,
        secret=kf_app.secret,
        api_base=url,
        tokens=TokenCache(aredis),
    )
    async with aiohttp.ClientSession() as http:
        yield adapter, kf, http


def _reply(text: str = "您好", **route: str) -> Reply:
    return Reply(
        platform=Platform.WECOM_KF,
        app="default",
        conversation_id=USER,
        recipient_id=USER,
        text=text,
        in_reply_to="m1",
        route={"open_kfid": OPEN_KFID, "external_userid": USER, **route},
    )


async def test_send_refreshes_an_expired_token_once(client_parts) -> None:
    adapter, kf, http = client_parts
    assert await adapter.send(_reply(), http) == "sent-1"
    kf.expire_current()
    assert await adapter.send(_reply("再见"), http) == "sent-2"
    assert kf.issued == ["kftok-1", "kftok-2"]
    assert kf.matching("/kf/send_msg")[-1].json == {
        "touser": USER,
        "open_kfid": OPEN_KFID,
        "msgtype": "text",
        "text": {"content": "再见"},
    }


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (200, {"errcode": 95018, "errmsg": "limit"}, PlatformRejectedError),
        (200, {"errcode": 95013, "errmsg": "session ended"}, PlatformRejectedError),
        (200, {"errcode": -1, "errmsg": "busy"}, PlatformUnavailableError),
        (200, {"errcode": 45009, "errmsg": "freq"}, PlatformUnavailableError),
        (502, None, PlatformUnavailableError),
    ],
)
async def test_send_maps_errcodes(client_parts, status, body, error) -> None:
    adapter, kf, http = client_parts
    await adapter.send(_reply(), http)  # the token is cached now
    kf.fail_next(1, status=status, body=body)
    with pytest.raises(error):
        await adapter.send(_reply(), http)


async def test_welcome_code_is_used_once(client_parts) -> None:
    adapter, kf, http = client_parts
    kf.welcome_codes.add("code-1")
    await adapter.send(_reply("欢迎", welcome_code="code-1", welcome_for="m1"), http)
    assert kf.welcomes == [{"code": "code-1", "content": "欢迎", "msgid": "welcome-1"}]
    with pytest.raises(PlatformRejectedError):
        await adapter.send(_reply("欢迎", welcome_code="code-1", welcome_for="m1"), http)


async def test_sync_with_a_stale_callback_token_is_refused(client_parts) -> None:
    adapter, _, http = client_parts
    with pytest.raises(PlatformRejectedError) as info:
        await adapter.sync(http, open_kfid=OPEN_KFID, sync_token="ENCunknown", cursor="")
    assert info.value.errcode == 95007


# --- human handoff ---------------------------------------------------------------------------


async def test_hand_to_human_moves_the_session_and_silences_the_bot(
    stack, kf_app, kf_api, aredis
) -> None:
    client, settings = stack
    kf, _ = kf_api
    from bot import wiring

    adapter = wiring.webhook_adapters(settings, aredis)[("wecom_kf", "default")]
    assert isinstance(adapter, WeComKfAdapter)
    async with aiohttp.ClientSession() as http:
        await adapter.hand_to_human(_reply(), http)
    # To the servicers' queue (state 2): WeCom assigns a servicer.
    assert kf.transfers == [{"open_kfid": OPEN_KFID, "external_userid": USER, "service_state": 2}]
    kf.text(USER, "人工在吗")
    kf.text("wmCustomerB", "机器人在吗")
    await _callback(client, kf_app, kf.new_sync_token())
    await wait_for(lambda: len(kf.sent) == 1)
    await asyncio.sleep(1.0)
    assert [(m["touser"], m["content"]) for m in kf.sent] == [("wmCustomerB", "ANSWER: 机器人在吗")]


async def test_session_status_changes_are_followed(stack, kf_app, kf_api) -> None:
    client, _ = stack
    kf, _ = kf_api
    kf.status_change(USER, 1)  # a servicer took the session from the pool
    kf.text(USER, "一")
    kf.status_change(USER, 3)  # the servicer ended it
    kf.text(USER, "二")
    await _callback(client, kf_app, kf.new_sync_token())
    await wait_for(lambda: len(kf.sent) == 1)
    await asyncio.sleep(1.0)
    assert [m["content"] for m in kf.sent] == ["ANSWER: 二"]


# --- the read position -----------------------------------------------------------------------


async def test_a_new_worker_resumes_from_the_cursor_saved_in_redis(
    stack, kf_app, kf_api, aredis
) -> None:
    client, _ = stack
    kf, _ = kf_api
    kf.text(USER, "早就答过的")
    kf.text(USER, "也答过了")
    kf.text(USER, "新问题")
    # What an earlier worker process left behind: only Redis survives a restart.
    await aredis.set(keys.kf_cursor("default", OPEN_KFID), "cur-2")
    await _callback(client, kf_app, kf.new_sync_token())
    await wait_for(lambda: len(kf.sent) == 1)
    await asyncio.sleep(1.0)
    assert kf.cursors_seen == ["cur-2"]
    assert [m["content"] for m in kf.sent] == ["ANSWER: 新问题"]


async def test_a_failed_page_is_retried_from_the_last_saved_cursor(
    stack, kf_app, kf_api, aredis
) -> None:
    client, _ = stack
    kf, _ = kf_api
    for i in range(3):
        kf.text(USER, f"问{i}")

    async def fail_the_second_page() -> None:
        await wait_for(lambda: len(kf.matching("/kf/sync_msg")) == 1)
        kf.fail_next(1, status=502)

    kf.delay_s = 0.3  # page 1 is still being answered when the failure is armed
    watcher = asyncio.create_task(fail_the_second_page())
    await _callback(client, kf_app, kf.new_sync_token())
    await watcher
    await wait_for(lambda: len(kf.sent) == 3, timeout_s=30)
    await asyncio.sleep(1.0)
    # Page 1 was queued and its cursor saved; the task's retry re-asked only for page 2.
    asked = [r.json["cursor"] for r in kf.matching("/kf/sync_msg")]
    assert asked == ["", "cur-2", "cur-2"]  # the second one failed with 502
    assert [m["content"] for m in kf.sent] == ["ANSWER: 问0", "ANSWER: 问1", "ANSWER: 问2"]
    assert await aredis.get(keys.kf_cursor("default", OPEN_KFID)) == b"cur-3"


async def test_a_forged_callback_is_refused_and_pulls_nothing(stack, kf_app, kf_api) -> None:
    client, _ = stack
    kf, _ = kf_api
    kf.text(USER, "你好")
    query, body = kf_app.callback(kf.new_sync_token())
    resp = await client.post(
        "/webhooks/wecom_kf", params={**query, "msg_signature": "0" * 40}, data=body
    )
    assert resp.status == 401
    forged = KfApp(kf_app.corp_id, kf_app.secret, "other-token", kf_app.aes_key)
    resp = await client.post("/webhooks/wecom_kf", params=forged.callback("x")[0], data=body)
    assert resp.status == 401
    await asyncio.sleep(1.0)
    assert kf.matching("/kf/sync_msg") == []


# --- bot simulate wecom_kf -----------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_bot_simulate_wecom_kf_round_trip_in_trial_mode(
    make_settings, celery_worker, fakes, wecom_app, kf_app, capsys
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from bot.cli import simulate
    from bot.web.app import create_app

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    sections = {k: v for k, v in fakes.sections(wecom_app).items() if k != "wecom"}
    # The server's own 微信客服 stand-in is the API (what `bot up` trial mode configures).
    settings = make_settings(
        **sections, wecom_kf=kf_app.section(f"{base}/sandbox/wecom"), core={"sandbox": True}
    )
    client = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=port))
    await client.start_server()
    try:
        celery_worker(settings)
        assert await simulate.wecom_kf(base, settings, "simuser", "运费多少", 20) == 0
        out = capsys.readouterr().out
        assert "POST /webhooks/wecom_kf -> 200 ''" in out
        assert "kf/send_msg to wmsimuser: ANSWER: 运费多少" in out
        # A second simulated message is pulled from the saved cursor: only it is answered.
        assert await simulate.wecom_kf(base, settings, "simuser", "发票怎么开", 20) == 0
        out = capsys.readouterr().out
        assert "kf/send_msg to wmsimuser: ANSWER: 发票怎么开" in out
        assert "运费多少" not in out
        assert len(fakes.vllm.matching("/chat/completions")) == 2
    finally:
        await client.close()


async def test_bot_simulate_wecom_kf_sends_a_callback_that_triggers_a_pull(
    stack, kf_app, kf_api, capsys
) -> None:
    from bot.cli import simulate

    client, settings = stack
    kf, _ = kf_api
    base = str(client.make_url("")).rstrip("/")
    assert await simulate.wecom_kf(base, settings, "simuser", "运费多少", 5) == 0
    assert "callback accepted" in capsys.readouterr().out
    # Verified and decrypted by the server, then pulled with the callback's token.
    await wait_for(lambda: len(kf.matching("/kf/sync_msg")) >= 1)
    pull = kf.matching("/kf/sync_msg")[0].json
    assert pull["open_kfid"] == simulate.SIM_OPEN_KFID
    assert pull["token"].startswith("SIM")
