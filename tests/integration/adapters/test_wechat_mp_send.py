"""WeChatMPAdapter.send against the fake MP API, with tokens cached in real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from adapters.tokens import TokenCache
from adapters.wechat_mp.adapter import WeChatMPAdapter
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


# --- customer-service limits and the 48001 fallback (adapters/wechat_mp/limits.py) -------------


def _triggered(text: str, *, at: float, to: str = "oQuota", event: bool = False) -> Reply:
    route = {
        "create_time": str(int(at)),
        "question": "运费多少",
        "via": "event" if event else "message",
    }
    base = reply(text, to)
    return Reply(
        platform=base.platform,
        app=base.app,
        conversation_id=to,
        recipient_id=to,
        text=text,
        in_reply_to=f"evt-{int(at)}",
        route=route,
    )


def _refusals(errcode: int, predicted: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(
        "bot_wechat_mp_custom_send_refusals_total",
        {"app": "default", "errcode": str(errcode), "predicted": predicted},
    )
    return value or 0.0


async def test_sixth_message_for_one_customer_message_is_not_sent(
    fake, http, tokens, aredis
) -> None:
    import time

    state, url = fake
    adapter = make_adapter(state, url, tokens, redis=aredis)
    now = time.time()
    for i in range(5):
        assert await adapter.send(_triggered(f"第{i}段", at=now), http) == ""
    before = _refusals(45047, "1")
    with pytest.raises(PlatformRejectedError) as err:
        await adapter.send(_triggered("第6段", at=now), http)
    assert err.value.errcode == 45047
    assert len(state.matching(SEND)) == 5  # the sixth was never called
    assert _refusals(45047, "1") == before + 1
    # A newer customer message opens a new quota.
    assert await adapter.send(_triggered("新问题的回答", at=now + 1), http) == ""
    assert len(state.sent) == 6


async def test_closed_windows_are_predicted_not_called(fake, http, tokens, aredis) -> None:
    import time

    state, url = fake
    adapter = make_adapter(state, url, tokens, redis=aredis)
    old = time.time() - 48 * 3600 - 60
    with pytest.raises(PlatformRejectedError) as err:
        await adapter.send(_triggered("太晚了", at=old, to="oOld"), http)
    assert err.value.errcode == 45015
    # A menu click allows 3 messages within one minute.
    click = time.time() - 61
    with pytest.raises(PlatformRejectedError):
        await adapter.send(_triggered("菜单回复", at=click, to="oClick", event=True), http)
    assert state.matching(SEND) == []


async def test_real_45047_is_counted_and_later_parts_are_not_tried(
    fake, http, tokens, aredis
) -> None:
    import time

    state, url = fake
    adapter = make_adapter(state, url, tokens, redis=aredis)
    state.reject_sends(45047)
    before = _refusals(45047, "0")
    now = time.time()
    with pytest.raises(PlatformRejectedError):
        await adapter.send(_triggered("第一段", at=now, to="oBusy"), http)
    with pytest.raises(PlatformRejectedError):
        await adapter.send(_triggered("第二段", at=now, to="oBusy"), http)
    assert len(state.matching(SEND)) == 1
    assert _refusals(45047, "0") == before + 1


async def test_48001_is_learned_and_answers_are_kept_for_the_next_message(
    fake, http, tokens, aredis
) -> None:
    import json
    import time

    from adapters.wechat_mp.limits import pending_key

    state, url = fake
    adapter = make_adapter(state, url, tokens, redis=aredis)
    state.reject_sends(48001)
    now = time.time()
    assert await adapter.send(_triggered("答案一", at=now, to="oNoApi"), http) == "deferred"
    assert await adapter.send(_triggered("答案二", at=now, to="oNoApi"), http) == "deferred"
    assert len(state.matching(SEND)) == 1  # learned: the second was not called
    kept = [json.loads(x) for x in await aredis.lrange(pending_key("default", "oNoApi"), 0, -1)]
    assert kept == [{"q": "运费多少", "text": "答案一"}, {"q": "运费多少", "text": "答案二"}]


async def test_configured_without_custom_api_never_calls(fake, http, tokens, aredis) -> None:
    import time

    from bot.errors import ConfigError

    state, url = fake
    with pytest.raises(ConfigError, match="BOT_MP_PASSIVE_WAIT_S"):
        make_adapter(state, url, tokens, redis=aredis, custom_api=False)
    adapter = make_adapter(state, url, tokens, redis=aredis, custom_api=False, passive_wait_s=4.5)
    assert await adapter.send(_triggered("答案", at=time.time(), to="oCfg"), http) == "deferred"
    assert state.matching(SEND) == []
    assert state.matching("/cgi-bin/stable_token") == []
