"""DingTalkAdapter.send against the fake DingTalk, with tokens cached in real Redis."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from adapters.dingtalk.adapter import DingTalkAdapter
from adapters.tokens import TokenCache
from bot.domain import Platform, Reply
from bot.errors import PlatformRejectedError, PlatformUnavailableError
from tests.fakes.base import serve
from tests.fakes.dingtalk_api import DingTalkFakeState, make_dingtalk_app

TOKEN_KEY = "token:dingtalk:default"


@pytest.fixture
def fake() -> Iterator[tuple[DingTalkFakeState, str]]:
    state = DingTalkFakeState()
    with serve(make_dingtalk_app(state)) as url:
        yield state, url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def tokens(aredis: aioredis.Redis) -> TokenCache:
    return TokenCache(aredis)


def make_adapter(state: DingTalkFakeState, url: str, tokens: TokenCache | None) -> DingTalkAdapter:
    return DingTalkAdapter(
        app_key=state.app_key,
        app_secret=state.app_secret,
        robot_code=state.robot_code,
        api_base=url,
        tokens=tokens,
        http_timeout_s=2,
    )


def reply(
    url: str,
    *,
    text: str = "## 退货\n七天内可以无理由退货。",
    group: bool = False,
    expires_in_s: float = 3600,
    webhook: bool = True,
) -> Reply:
    expiry_ms = int((time.time() + expires_in_s) * 1000)
    return Reply(
        platform=Platform.DINGTALK,
        app="default",
        conversation_id="cidGroup==" if group else "cid11==",
        recipient_id="manager4220",
        text=text,
        in_reply_to="msgABC==",
        is_group=group,
        route={
            "sessionWebhook": f"{url}/robot/sendBySession?session=s1" if webhook else "",
            "sessionWebhookExpiredTime": str(expiry_ms),
            "conversationType": "2" if group else "1",
            "conversationId": "cidGroup==" if group else "cid11==",
            "senderStaffId": "manager4220",
            "robotCode": "ding-fake-app",
        },
    )


async def test_live_session_webhook_gets_the_markdown(fake, tokens, http) -> None:
    state, url = fake
    msg_id = await make_adapter(state, url, tokens).send(reply(url), http)
    assert msg_id == ""
    assert state.sent == [
        {
            "via": "session",
            "session": "s1",
            "title": "退货",
            "text": "## 退货\n七天内可以无理由退货。",
            "at": [],
            "processQueryKey": "pqk-1",
        }
    ]
    # No token is needed for the session webhook.
    assert state.matching("/oauth2/accessToken") == []


async def test_group_session_reply_mentions_the_asker(fake, tokens, http) -> None:
    state, url = fake
    await make_adapter(state, url, tokens).send(reply(url, group=True, text="好的"), http)
    (sent,) = state.sent
    assert (sent["text"], sent["at"]) == ("@manager4220 好的", ["manager4220"])


async def test_session_gone_falls_back_to_the_openapi_exactly_once(fake, tokens, http) -> None:
    state, url = fake
    state.session_gone = True
    msg_id = await make_adapter(state, url, tokens).send(reply(url), http)
    (sent,) = state.sent
    assert sent["via"] == "oto"
    assert sent["userIds"] == ["manager4220"]
    assert (sent["title"], sent["text"]) == ("退货", "## 退货\n七天内可以无理由退货。")
    assert msg_id == sent["processQueryKey"]
    assert len(state.matching("/robot/sendBySession")) == 1
    request = state.matching("/oToMessages/batchSend")[0]
    assert request.headers["x-acs-dingtalk-access-token"] == "dt-tok-1"
    assert json.loads(request.json["msgParam"]) == {"title": "退货", "text": sent["text"]}


async def test_expired_session_goes_to_the_openapi_directly(fake, tokens, http) -> None:
    state, url = fake
    # Within the 60 s margin counts as expired.
    await make_adapter(state, url, tokens).send(reply(url, expires_in_s=30), http)
    assert state.matching("/robot/sendBySession") == []
    assert [m["via"] for m in state.sent] == ["oto"]


async def test_group_without_session_uses_group_send(fake, tokens, http) -> None:
    state, url = fake
    await make_adapter(state, url, tokens).send(reply(url, group=True, webhook=False), http)
    (sent,) = state.sent
    assert (sent["via"], sent["openConversationId"]) == ("group", "cidGroup==")
    # The OpenAPI cannot @: no literal mention in the text.
    assert not sent["text"].startswith("@")


async def test_token_is_cached_between_sends(fake, tokens, http, aredis) -> None:
    state, url = fake
    adapter = make_adapter(state, url, tokens)
    await adapter.send(reply(url, webhook=False), http)
    await adapter.send(reply(url, webhook=False), http)
    assert len(state.matching("/oauth2/accessToken")) == 1
    assert await aredis.get(TOKEN_KEY) == b"dt-tok-1"
    assert 0 < await aredis.ttl(TOKEN_KEY) <= 7200 - 300


async def test_expired_token_is_refreshed_once_and_retried(fake, tokens, http, aredis) -> None:
    state, url = fake
    adapter = make_adapter(state, url, tokens)
    await adapter.send(reply(url, webhook=False), http)
    state.expire_current()
    await adapter.send(reply(url, webhook=False), http)
    assert len(state.sent) == 2
    assert len(state.matching("/oauth2/accessToken")) == 2
    assert await aredis.get(TOKEN_KEY) == b"dt-tok-2"


async def test_token_refused_twice_is_transient(fake, http) -> None:
    state, url = fake
    # The fake answers 401 on both tries (injected), so the send must give up, retryably.
    state.fail_next(1, status=200, body={"accessToken": "bogus-1", "expireIn": 7200})
    state.fail_next(1, status=401, body={"code": "InvalidAuthentication", "message": "x"})
    state.fail_next(1, status=200, body={"accessToken": "bogus-2", "expireIn": 7200})
    state.fail_next(1, status=401, body={"code": "InvalidAuthentication", "message": "x"})
    with pytest.raises(PlatformUnavailableError):
        await make_adapter(state, url, None).send(reply(url, webhook=False), http)
    assert state.sent == []


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_busy_openapi_is_transient(fake, tokens, http, status: int) -> None:
    state, url = fake
    state.fail_next(1, status=200, body={"accessToken": "t", "expireIn": 7200})
    state.fail_next(1, status=status, body={"code": "Throttling", "message": "slow down"})
    with pytest.raises(PlatformUnavailableError) as info:
        await make_adapter(state, url, tokens).send(reply(url, webhook=False), http)
    assert info.value.status == status


async def test_rejected_request_is_permanent(fake, tokens, http) -> None:
    state, url = fake
    adapter = DingTalkAdapter(
        app_key=state.app_key,
        app_secret=state.app_secret,
        robot_code="wrong-robot",
        api_base=url,
        tokens=tokens,
    )
    base = reply(url, webhook=False)
    r = dataclasses.replace(base, route={**base.route, "robotCode": ""})
    with pytest.raises(PlatformRejectedError) as info:
        await adapter.send(r, http)
    assert info.value.status == 400


async def test_bad_credentials_are_permanent(fake, http) -> None:
    state, url = fake
    adapter = DingTalkAdapter(app_key=state.app_key, app_secret="wrong", api_base=url, tokens=None)
    with pytest.raises(PlatformRejectedError):
        await adapter.send(reply(url, webhook=False), http)


async def test_unreachable_api_is_transient(http) -> None:
    state = DingTalkFakeState()
    adapter = make_adapter(state, "http://127.0.0.1:9", None)
    with pytest.raises(PlatformUnavailableError):
        await adapter.send(reply("http://127.0.0.1:9", webhook=False), http)


async def test_session_webhook_error_other_than_gone_is_permanent(fake, tokens, http) -> None:
    state, url = fake
    base = reply(url)
    bad = dataclasses.replace(base, route={**base.route, "sessionWebhook": f"{url}/nowhere"})
    with pytest.raises(PlatformRejectedError):
        await make_adapter(state, url, tokens).send(bad, http)
    assert state.sent == []
