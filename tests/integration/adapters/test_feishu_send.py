"""FeishuAdapter.send against the fake Feishu API, with tokens cached in real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from adapters.feishu.adapter import FeishuAdapter, reply_uuid
from adapters.tokens import TokenCache
from bot.domain import Platform, Reply
from bot.errors import PlatformRejectedError, PlatformUnavailableError
from tests.fakes.base import serve
from tests.fakes.feishu_api import FeishuFakeState, make_feishu_app

TOKEN_KEY = "token:feishu:default"
TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"


@pytest.fixture
def fake() -> Iterator[tuple[FeishuFakeState, str]]:
    state = FeishuFakeState()
    with serve(make_feishu_app(state)) as url:
        yield state, url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def tokens(aredis: aioredis.Redis) -> TokenCache:
    return TokenCache(aredis)


def make_adapter(
    state: FeishuFakeState, url: str, tokens: TokenCache | None, **overrides: Any
) -> FeishuAdapter:
    config: dict[str, Any] = {
        "app_id": state.app_id,
        "app_secret": state.app_secret,
        "verification_token": "vt",
        "encrypt_key": "",
        "api_base": url,
        "tokens": tokens,
        "http_timeout_s": 2,
    }
    return FeishuAdapter(**{**config, **overrides})


def reply(text: str = "您好，订单已发货。", message_id: str = "om_in_1") -> Reply:
    route = {"message_id": message_id, "chat_id": "oc_chat", "chat_type": "p2p", "event_id": "ev"}
    return Reply(
        platform=Platform.FEISHU,
        app="default",
        conversation_id="oc_chat",
        recipient_id="ou_user",
        text=text,
        in_reply_to=message_id,
        route=route,
    )


def calls(state: FeishuFakeState, suffix: str) -> int:
    return len(state.matching(suffix))


async def test_reply_is_sent_with_a_uuid(
    fake: tuple[FeishuFakeState, str], tokens: TokenCache, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    sent_id = await make_adapter(state, url, tokens).send(reply(), http)
    assert sent_id == "om_sent_1"
    (request,) = state.matching("/open-apis/im/v1/messages/om_in_1/reply")
    assert request.headers["authorization"] == "Bearer t-1"
    assert request.json == {
        "msg_type": "text",
        "content": json.dumps({"text": "您好，订单已发货。"}, ensure_ascii=False),
        "uuid": reply_uuid("om_in_1", "您好，订单已发货。"),
    }
    assert state.sent[0]["reply_to"] == "om_in_1"
    (token_request,) = state.matching(TOKEN_PATH)
    assert token_request.json == {"app_id": state.app_id, "app_secret": state.app_secret}


async def test_a_repeated_part_posts_nothing_new(
    fake: tuple[FeishuFakeState, str], tokens: TokenCache, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    adapter = make_adapter(state, url, tokens)
    first = await adapter.send(reply("同一段"), http)
    # A worker retried after a crash between the send and its marker: Feishu dedupes on uuid.
    again = await adapter.send(reply("同一段"), http)
    assert first == again
    assert len(state.sent) == 1
    await adapter.send(reply("另一段"), http)
    assert len(state.sent) == 2


async def test_token_is_cached_in_redis(
    fake: tuple[FeishuFakeState, str],
    tokens: TokenCache,
    aredis: aioredis.Redis,
    http: aiohttp.ClientSession,
) -> None:
    state, url = fake
    await make_adapter(state, url, tokens).send(reply("one"), http)
    await make_adapter(state, url, TokenCache(aredis)).send(reply("two"), http)
    assert calls(state, TOKEN_PATH) == 1
    assert await aredis.get(TOKEN_KEY) == b"t-1"


async def test_expired_token_is_refreshed_once_and_retried_once(
    fake: tuple[FeishuFakeState, str],
    tokens: TokenCache,
    aredis: aioredis.Redis,
    http: aiohttp.ClientSession,
) -> None:
    state, url = fake
    adapter = make_adapter(state, url, tokens)
    await adapter.send(reply("first"), http)
    state.expire_current()
    assert await adapter.send(reply("second"), http) == "om_sent_2"
    assert [(m["text"], m["token"]) for m in state.sent] == [("first", "t-1"), ("second", "t-2")]
    assert calls(state, TOKEN_PATH) == 2
    assert calls(state, "/reply") == 3  # the refused attempt included
    assert await aredis.get(TOKEN_KEY) == b"t-2"


async def test_token_refused_after_refresh_is_transient(
    fake: tuple[FeishuFakeState, str], tokens: TokenCache, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    state.issue_expired = True
    with pytest.raises(PlatformUnavailableError) as caught:
        await make_adapter(state, url, tokens).send(reply("x"), http)
    assert caught.value.errcode == 99991663
    assert state.sent == []
    # One refresh, one retry: no loop.
    assert calls(state, TOKEN_PATH) == 2
    assert calls(state, "/reply") == 2


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_rate_limit_and_server_errors_are_transient(
    fake: tuple[FeishuFakeState, str],
    tokens: TokenCache,
    http: aiohttp.ClientSession,
    status: int,
) -> None:
    state, url = fake
    adapter = make_adapter(state, url, tokens)
    await adapter.send(reply("warm-up"), http)
    state.fail_next(1, status=status)
    with pytest.raises(PlatformUnavailableError) as caught:
        await adapter.send(reply(), http)
    assert caught.value.status == status
    assert len(state.sent) == 1


async def test_chat_frequency_limit_is_transient(
    fake: tuple[FeishuFakeState, str], tokens: TokenCache, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    adapter = make_adapter(state, url, tokens)
    await adapter.send(reply("warm-up"), http)
    state.fail_next(1, status=400, body={"code": 230020, "msg": "frequency limit"})
    with pytest.raises(PlatformUnavailableError) as caught:
        await adapter.send(reply(), http)
    assert caught.value.errcode == 230020


async def test_other_codes_are_permanent(
    fake: tuple[FeishuFakeState, str], tokens: TokenCache, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    adapter = make_adapter(state, url, tokens)
    await adapter.send(reply("warm-up"), http)
    state.fail_next(1, status=400, body={"code": 230002, "msg": "bot not in chat"})
    with pytest.raises(PlatformRejectedError) as caught:
        await adapter.send(reply(), http)
    assert caught.value.errcode == 230002


async def test_bad_app_secret_is_permanent(
    fake: tuple[FeishuFakeState, str], tokens: TokenCache, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    with pytest.raises(PlatformRejectedError) as caught:
        await make_adapter(state, url, tokens, app_secret="wrong").send(reply(), http)
    assert caught.value.errcode == 10003
    assert state.sent == []


async def test_timeout_is_transient(
    fake: tuple[FeishuFakeState, str], tokens: TokenCache, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    adapter = make_adapter(state, url, tokens, http_timeout_s=0.3)
    await adapter.send(reply("warm-up"), http)
    state.fail_next(1, status=200, body={"code": 0}, delay_s=2)
    with pytest.raises(PlatformUnavailableError, match="unreachable"):
        await adapter.send(reply(), http)


async def test_unreachable_api_is_transient(http: aiohttp.ClientSession) -> None:
    adapter = FeishuAdapter(
        app_id="a",
        app_secret="s",
        verification_token="v",
        encrypt_key="",
        api_base="http://127.0.0.1:9",
        tokens=None,
        http_timeout_s=1,
    )
    with pytest.raises(PlatformUnavailableError):
        await adapter.send(reply(), http)


async def test_event_reply_posts_into_the_chat(
    fake: tuple[FeishuFakeState, str], tokens: TokenCache, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    welcome = Reply(
        platform=Platform.FEISHU,
        app="default",
        conversation_id="oc_group",
        recipient_id="ou_admin",
        text="大家好，我是客服机器人。",
        in_reply_to="ev_added",
        is_group=True,
        route={"chat_id": "oc_group"},
    )
    assert await make_adapter(state, url, tokens).send(welcome, http) == "om_sent_1"
    (request,) = state.matching("/open-apis/im/v1/messages")
    assert request.query == {"receive_id_type": "chat_id"}
    assert state.sent[0]["receive_id"] == "oc_group"


# --- the bot's own open_id (bot/v3/info) ----------------------------------------------------

INFO_PATH = "/open-apis/bot/v3/info"


async def test_bot_open_id_is_fetched_once_and_shared_through_redis(
    fake: tuple[FeishuFakeState, str],
    tokens: TokenCache,
    http: aiohttp.ClientSession,
    aredis: aioredis.Redis,
) -> None:
    state, url = fake
    first = make_adapter(state, url, tokens)
    assert first.bot_open_id == ""
    await first.prepare(http)
    assert first.bot_open_id == state.bot_open_id
    (request,) = state.matching(INFO_PATH)
    assert request.method == "GET"
    assert request.headers["authorization"] == "Bearer t-1"
    await first.prepare(http)  # known: no second call
    # Another process (a new adapter, no session of its own) reads it from Redis.
    second = make_adapter(state, url, tokens)
    await second.prepare()
    assert second.bot_open_id == state.bot_open_id
    assert calls(state, INFO_PATH) == 1
    assert await aredis.ttl(first.bot_open_id_key) > 6 * 24 * 3600


async def test_configured_open_id_skips_the_lookup(
    fake: tuple[FeishuFakeState, str], tokens: TokenCache, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    adapter = make_adapter(state, url, tokens, bot_open_id="ou_configured")
    await adapter.prepare(http)
    assert adapter.bot_open_id == "ou_configured"
    assert calls(state, INFO_PATH) == 0


async def test_failed_lookup_is_logged_throttled_and_retried_later(
    fake: tuple[FeishuFakeState, str],
    tokens: TokenCache,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state, url = fake
    state.bot_info_fail = True
    adapter = make_adapter(state, url, tokens, bot_info_retry_s=0.3)
    with caplog.at_level("WARNING", logger="adapters.feishu.adapter"):
        await adapter.prepare(http)
    assert adapter.bot_open_id == ""
    assert any("cannot learn the bot open_id" in r.getMessage() for r in caplog.records)
    await adapter.prepare(http)  # within the retry interval: not asked again
    assert calls(state, INFO_PATH) == 1
    state.bot_info_fail = False
    await asyncio.sleep(0.35)
    await adapter.prepare(http)
    assert adapter.bot_open_id == state.bot_open_id
    assert calls(state, INFO_PATH) == 2


# --- post and @asker -------------------------------------------------------------------------


def group_reply(text: str) -> Reply:
    base = reply(text, message_id="om_in_g")
    return Reply(
        platform=base.platform,
        app=base.app,
        conversation_id="oc_group",
        recipient_id="ou_asker",
        text=text,
        in_reply_to=base.in_reply_to,
        is_group=True,
        route={**base.route, "chat_type": "group", "chat_id": "oc_group"},
    )


async def test_markdown_group_reply_is_a_post_mentioning_the_asker(
    fake: tuple[FeishuFakeState, str], tokens: TokenCache, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    adapter = make_adapter(state, url, tokens)
    text = "退货步骤：\n\n1. 打开**我的订单**\n2. 点 [申请退货](https://shop.example/r)"
    (part,) = adapter.split(text)
    await adapter.send(group_reply(part), http)
    (sent,) = state.sent
    assert (sent["msg_type"], sent["mentions"], sent["reply_to"]) == (
        "post",
        ["ou_asker"],
        "om_in_g",
    )
    assert sent["text"].splitlines() == [
        "退货步骤：",
        "",
        "1. 打开我的订单",
        "2. 点 申请退货 (https://shop.example/r)",
    ]
    assert sent["uuid"] == reply_uuid("om_in_g", part)
    # A plain answer in a group is text with an <at> tag; in p2p nobody is mentioned.
    await adapter.send(group_reply("好的"), http)
    await adapter.send(reply("好的"), http)
    assert [(s["msg_type"], s["mentions"], s["text"]) for s in state.sent[1:]] == [
        ("text", ["ou_asker"], "好的"),
        ("text", [], "好的"),
    ]
    # The same part again keeps its uuid: Feishu posts nothing new.
    await adapter.send(group_reply(part), http)
    assert len(state.sent) == 3
