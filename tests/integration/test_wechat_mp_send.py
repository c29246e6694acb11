"""WeChatMPAdapter.send against the fake MP API, with tokens cached in real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from adapters.tokens import TokenCache
from adapters.wechat_mp import WeChatMPAdapter
from bot.domain import Platform, Reply
from bot.errors import PlatformRejectedError, PlatformUnavailableError
from tests.fakes.base import serve
from tests.fakes.wechat_mp_api import WeChatMPFakeState, make_wechat_mp_app

TOKEN_KEY = "token:wechat_mp:default"
SEND = "/cgi-bin/message/custom/send"


@pytest.fixture
def fake() -> Iterator[tuple[WeChatMPFakeState, str]]:
    state = WeChatMPFakeState()
    with serve(make_wechat_mp_app(state)) as url:
        yield state, url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def tokens(aredis: aioredis.Redis) -> TokenCache:
    await aredis.delete(TOKEN_KEY)
    return TokenCache(aredis)


def make_adapter(
    state: WeChatMPFakeState, url: str, tokens: TokenCache | None, **overrides: Any
) -> WeChatMPAdapter:
    config: dict[str, Any] = {
        "app_id": state.app_id,
        "app_secret": state.secret,
        "token": "callback-token",
        "aes_key": "",
        "api_base": url,
        "tokens": tokens,
        "http_timeout_s": 2,
    }
    return WeChatMPAdapter(**{**config, **overrides})


def reply(text: str = "您好，订单已发货。", to: str = "oOpenId1") -> Reply:
    return Reply(
        platform=Platform.WECHAT_MP,
        app="default",
        conversation_id=to,
        recipient_id=to,
        text=text,
        in_reply_to="6054768590064713728",
    )


async def test_send_uses_a_cached_stable_token(fake, http, tokens) -> None:
    state, url = fake
    adapter = make_adapter(state, url, tokens)
    assert await adapter.send(reply(), http) == ""
    await adapter.send(reply("第二句"), http)
    assert [(m["touser"], m["content"]) for m in state.sent] == [
        ("oOpenId1", "您好，订单已发货。"),
        ("oOpenId1", "第二句"),
    ]
    fetches = state.matching("/cgi-bin/stable_token")
    assert len(fetches) == 1
    assert fetches[0].json == {
        "grant_type": "client_credential",
        "appid": state.app_id,
        "secret": state.secret,
        "force_refresh": False,
    }
    body = state.matching(SEND)[0].json
    assert body == {
        "touser": "oOpenId1",
        "msgtype": "text",
        "text": {"content": "您好，订单已发货。"},
    }


async def test_refused_token_is_force_refreshed_once_and_retried(fake, http, tokens) -> None:
    state, url = fake
    adapter = make_adapter(state, url, tokens)
    await adapter.send(reply("一"), http)
    state.revoke_current()
    await adapter.send(reply("二"), http)
    assert [m["content"] for m in state.sent] == ["一", "二"]
    assert state.sent[1]["token"] == "mp-tok-2"
    fetches = state.matching("/cgi-bin/stable_token")
    assert [f.json["force_refresh"] for f in fetches] == [False, True]
    assert len(state.matching(SEND)) == 3


async def test_token_refused_twice_is_unavailable(fake, http, tokens) -> None:
    state, url = fake
    adapter = make_adapter(state, url, tokens)
    state.reject_sends(40001, 42001)
    with pytest.raises(PlatformUnavailableError) as info:
        await adapter.send(reply(), http)
    assert info.value.errcode == 42001
    assert len(state.matching(SEND)) == 2


@pytest.mark.parametrize("errcode", [45015, 45047, 48001])
async def test_window_quota_and_permission_are_rejected_not_retried(
    fake, http, tokens, errcode: int
) -> None:
    state, url = fake
    state.reject_sends(errcode)
    with pytest.raises(PlatformRejectedError) as info:
        await make_adapter(state, url, tokens).send(reply(), http)
    assert info.value.errcode == errcode
    assert len(state.matching(SEND)) == 1
    assert state.sent == []


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, {"errcode": -1, "errmsg": "system error"}), (200, {"errcode": 45009}), (502, None)],
)
async def test_busy_and_server_errors_are_unavailable(fake, http, tokens, status, body) -> None:
    state, url = fake
    adapter = make_adapter(state, url, tokens)
    await adapter.send(reply(), http)  # token cached: the failure hits custom/send
    state.fail_next(1, status=status, body=body)
    with pytest.raises(PlatformUnavailableError):
        await adapter.send(reply(), http)


async def test_timeout_is_unavailable(fake, http) -> None:
    state, url = fake
    state.fail_next(1, status=200, body={}, delay_s=3)
    with pytest.raises(PlatformUnavailableError):
        await make_adapter(state, url, None, http_timeout_s=0.5).send(reply(), http)


async def test_bad_secret_is_rejected(fake, http) -> None:
    state, url = fake
    with pytest.raises(PlatformRejectedError) as info:
        await make_adapter(state, url, None, app_secret="wrong").send(reply(), http)
    assert info.value.errcode == 40125
