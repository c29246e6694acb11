"""A platform that refuses us with a known errcode: the log line says what it means and what
to fix, and `bot_platform_errors_total{platform,errcode}` counts it (adapters/errcodes.py).

The WeCom API, vLLM and DingTalk are fakes on loopback; Redis and the Celery worker are real.
"""

from __future__ import annotations

import logging

import aiohttp
import pytest
from prometheus_client import REGISTRY
from sqlmodel import Session, select

from adapters.dingtalk.adapter import DingTalkAdapter
from bot.db.engine import get_engine
from bot.db.models import Delivery
from bot.domain import Platform, Reply
from bot.errors import PlatformRejectedError
from tests.fakes.base import serve
from tests.fakes.dingtalk_api import DingTalkFakeState, make_dingtalk_app
from tests.integration.conftest import wait_for

NOT_TRUSTED = {
    "errcode": 60020,
    "errmsg": "not allow to access from your ip, hint: [1707074068426830714460135], "
    "from ip: 203.0.113.7, more info at https://open.work.weixin.qq.com/devtool/query?e=60020",
}


def _count(platform: str, errcode: str) -> float:
    labels = {"platform": platform, "errcode": errcode}
    return REGISTRY.get_sample_value("bot_platform_errors_total", labels) or 0.0


async def _post(client, wecom_app, text: str, user: str) -> None:
    query, body = wecom_app.callback(text, user=user)
    resp = await client.post("/webhooks/wecom", params=query, data=body)
    assert resp.status == 200, await resp.text()


async def test_wecom_60020_is_explained_in_the_log_and_counted(
    make_settings, make_client, celery_worker, fakes, wecom_app, caplog
) -> None:
    settings = make_settings(**fakes.sections(wecom_app))
    client = await make_client(settings)
    celery_worker(settings)
    caplog.set_level(logging.ERROR, logger="bot.pipeline.turn")
    # A first reply caches the token, so the refusal below is message/send's own.
    await _post(client, wecom_app, "怎么退货", "lisi")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    before = _count("wecom", "60020")
    fakes.wecom.fail_next(1, status=200, body=NOT_TRUSTED)

    await _post(client, wecom_app, "多久发货", "lisi")

    def refused() -> list[str]:
        return [r.getMessage() for r in caplog.records if "send rejected wecom" in r.getMessage()]

    await wait_for(lambda: bool(refused()))
    (line,) = refused()
    assert "errcode=60020" in line
    assert "from ip: 203.0.113.7" in line  # WeCom's own words name the address to list
    assert "60020: this server's IP is not among the app's trusted IPs" in line
    assert "企业可信IP" in line
    assert line.endswith("(docs/troubleshooting.md#wecom-60020)")
    assert _count("wecom", "60020") == before + 1
    assert len(fakes.wecom.sent) == 1  # refused for good: not retried
    engine = get_engine(settings.core.effective_database_url())
    with Session(engine) as s:
        failed = s.exec(select(Delivery).where(Delivery.status == "failed")).one()
        assert "errcode=60020" in (failed.error or "")


async def test_dingtalk_missing_permission_is_not_taken_for_a_token_error() -> None:
    # DingTalk names the missing permission with a code that mentions the token; a new
    # token cannot grant it, so the send is refused at once, with the code to look up.
    state = DingTalkFakeState()
    denied = {
        "code": "Forbidden.AccessDenied.AccessTokenPermissionDenied",
        "message": "没有调用该接口的权限",
        "accessdenieddetail": {"requiredScopes": ["qyapi_robot_sendmsg"]},
    }
    with serve(make_dingtalk_app(state)) as url:
        state.fail_next(1, status=200, body={"accessToken": "t-1", "expireIn": 7200})
        state.fail_next(1, status=403, body=denied)
        adapter = DingTalkAdapter(
            app_key=state.app_key, app_secret=state.app_secret, api_base=url, tokens=None
        )
        reply = Reply(
            platform=Platform.DINGTALK,
            app="default",
            conversation_id="cid11==",
            recipient_id="manager4220",
            text="您好",
            in_reply_to="msgABC==",
            route={"senderStaffId": "manager4220", "conversationType": "1"},
        )
        async with aiohttp.ClientSession() as http:
            with pytest.raises(PlatformRejectedError) as info:
                await adapter.send(reply, http)
    assert info.value.errcode == denied["code"]
    assert info.value.status == 403
    assert len(state.matching("/oauth2/accessToken")) == 1  # no refresh: it would not help
