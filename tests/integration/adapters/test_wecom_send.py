"""WeComAdapter.send against the fake WeCom API, with tokens cached in real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from adapters.tokens import TokenCache
from adapters.wecom.adapter import WeComAdapter
from bot.domain import Platform, Reply
from bot.errors import PlatformRejectedError, PlatformUnavailableError, TransientError
from tests.fakes.base import serve
from tests.fakes.wecom_api import WeComFakeState, make_wecom_app

KEY_TEXT = ("wecomSendTestKey" * 3)[:43]
TOKEN_KEY = "token:wecom:default"


@pytest.fixture
def fake() -> Iterator[tuple[WeComFakeState, str]]:
    state = WeComFakeState()
    with serve(make_wecom_app(state)) as url:
        yield state, url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def tokens(aredis: aioredis.Redis) -> TokenCache:
    return TokenCache(aredis)


def make_adapter(
    state: WeComFakeState, url: str, tokens: TokenCache | None, **overrides: Any
) -> WeComAdapter:
    config: dict[str, Any] = {
        "corp_id": state.corp_id,
        "agent_id": str(state.agent_id),
        "token": "callback-token",
        "aes_key": KEY_TEXT,
        "secret": state.secret,
        "api_base": url,
        "tokens": tokens,
        "http_timeout_s": 2,
    }
    return WeComAdapter(**{**config, **overrides})


def reply(text: str = "您好，订单已发货。", to: str = "zhangsan") -> Reply:
    return Reply(
        platform=Platform.WECOM,
        app="default",
        conversation_id=to,
        recipient_id=to,
        text=text,
        in_reply_to="4561255354251345929",
    )


def calls(state: WeComFakeState, path: str) -> int:
    return len(state.matching(path))


# --- sending ---------------------------------------------------------------------------------


async def test_send_delivers_exactly_one_message(
    fake: tuple[WeComFakeState, str], tokens: TokenCache, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    msg_id = await make_adapter(state, url, tokens).send(reply(), http)
    assert msg_id == "msg-1"
    assert state.sent == [
        {"touser": "zhangsan", "content": "您好，订单已发货。", "token": "tok-1", "msgid": "msg-1"}
    ]
    (request,) = state.matching("/cgi-bin/message/send")
    assert request.query == {"access_token": "tok-1"}
    assert request.json == {
        "touser": "zhangsan",
        "msgtype": "text",
        "agentid": state.agent_id,
        "text": {"content": "您好，订单已发货。"},
        "safe": 0,
    }  # no enable_duplicate_check: the same answer twice must reach the customer twice
    (token_request,) = state.matching("/cgi-bin/gettoken")
    assert token_request.method == "GET"


async def test_token_is_cached_in_redis(
    fake: tuple[WeComFakeState, str],
    tokens: TokenCache,
    aredis: aioredis.Redis,
    http: aiohttp.ClientSession,
) -> None:
    state, url = fake
    await make_adapter(state, url, tokens).send(reply("one"), http)
    # A second adapter (another worker) finds the token in Redis.
    await make_adapter(state, url, TokenCache(aredis)).send(reply("two"), http)
    assert calls(state, "/cgi-bin/gettoken") == 1
    assert [m["content"] for m in state.sent] == ["one", "two"]
    assert await aredis.get(TOKEN_KEY) == b"tok-1"
    # 7200 s granted, 300 s margin.
    assert 6890 <= await aredis.ttl(TOKEN_KEY) <= 6900


@pytest.mark.parametrize(
    ("spoil", "errcode"),
    [("expire_current", 42001), ("revoke_current", 40014)],
)
async def test_refused_token_is_refreshed_once_and_retried_once(
    fake: tuple[WeComFakeState, str],
    tokens: TokenCache,
    aredis: aioredis.Redis,
    http: aiohttp.ClientSession,
    spoil: str,
    errcode: int,
) -> None:
    state, url = fake
    adapter = make_adapter(state, url, tokens)
    await adapter.send(reply("first"), http)
    getattr(state, spoil)()

    assert await adapter.send(reply("second"), http) == "msg-2"

    assert [(m["content"], m["token"]) for m in state.sent] == [
        ("first", "tok-1"),
        ("second", "tok-2"),
    ]
    assert calls(state, "/cgi-bin/gettoken") == 2
    assert calls(state, "/cgi-bin/message/send") == 3  # the refused attempt included
    assert await aredis.get(TOKEN_KEY) == b"tok-2"
    assert state.token_errcode("tok-1") == errcode


async def test_token_refused_after_refresh_is_transient(
    fake: tuple[WeComFakeState, str], tokens: TokenCache, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    state.issue_expired = True
    with pytest.raises(PlatformUnavailableError) as caught:
        await make_adapter(state, url, tokens).send(reply(), http)
    assert caught.value.errcode == 42001
    assert state.sent == []
    # One refresh, one retry: no loop.
    assert calls(state, "/cgi-bin/gettoken") == 2
    assert calls(state, "/cgi-bin/message/send") == 2


async def test_without_a_cache_each_send_fetches_a_token(
    fake: tuple[WeComFakeState, str], http: aiohttp.ClientSession
) -> None:
    state, url = fake
    adapter = make_adapter(state, url, None)
    await adapter.send(reply("one"), http)
    await adapter.send(reply("two"), http)
    assert calls(state, "/cgi-bin/gettoken") == 2
    assert len(state.sent) == 2


# --- failures ---------------------------------------------------------------------------------


async def _primed(
    state: WeComFakeState, url: str, tokens: TokenCache, http: aiohttp.ClientSession, **kw: Any
) -> WeComAdapter:
    adapter = make_adapter(state, url, tokens, **kw)
    await adapter.send(reply("warm-up"), http)
    return adapter


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_server_errors_are_transient(
    fake: tuple[WeComFakeState, str],
    tokens: TokenCache,
    http: aiohttp.ClientSession,
    status: int,
) -> None:
    state, url = fake
    adapter = await _primed(state, url, tokens, http)
    state.fail_next(1, status=status)
    with pytest.raises(PlatformUnavailableError) as caught:
        await adapter.send(reply(), http)
    assert caught.value.status == status
    assert len(state.sent) == 1  # only the warm-up
    assert isinstance(caught.value, TransientError)


async def test_server_error_while_fetching_the_token_is_transient(
    fake: tuple[WeComFakeState, str], tokens: TokenCache, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    state.fail_next(1, status=503)
    with pytest.raises(PlatformUnavailableError):
        await make_adapter(state, url, tokens).send(reply(), http)
    # The failed refresh released its lock: the next send fetches and delivers.
    assert await make_adapter(state, url, tokens).send(reply(), http) == "msg-1"


@pytest.mark.parametrize("errcode", [-1, 45009, 45033])
async def test_busy_errcodes_are_transient(
    fake: tuple[WeComFakeState, str],
    tokens: TokenCache,
    http: aiohttp.ClientSession,
    errcode: int,
) -> None:
    state, url = fake
    adapter = await _primed(state, url, tokens, http)
    state.fail_next(1, status=200, body={"errcode": errcode, "errmsg": "busy"})
    with pytest.raises(PlatformUnavailableError) as caught:
        await adapter.send(reply(), http)
    assert caught.value.errcode == errcode


async def test_other_errcodes_are_permanent(
    fake: tuple[WeComFakeState, str], tokens: TokenCache, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    adapter = await _primed(state, url, tokens, http)
    state.fail_next(1, status=200, body={"errcode": 81013, "errmsg": "user invalid"})
    with pytest.raises(PlatformRejectedError) as caught:
        await adapter.send(reply(), http)
    assert caught.value.errcode == 81013


async def test_the_fake_validates_the_body(
    fake: tuple[WeComFakeState, str], tokens: TokenCache, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    with pytest.raises(PlatformRejectedError) as caught:
        await make_adapter(state, url, tokens, agent_id="999").send(reply(), http)
    assert caught.value.errcode == 40056
    with pytest.raises(PlatformRejectedError) as caught:
        await make_adapter(state, url, tokens).send(reply("长" * 683), http)
    assert caught.value.errcode == 45002


@pytest.mark.parametrize(
    ("overrides", "errcode"),
    [({"secret": "wrong-secret"}, 40001), ({"corp_id": "ww-wrong-corp"}, 40013)],
)
async def test_bad_credentials_are_permanent(
    fake: tuple[WeComFakeState, str],
    tokens: TokenCache,
    http: aiohttp.ClientSession,
    overrides: dict[str, str],
    errcode: int,
) -> None:
    state, url = fake
    with pytest.raises(PlatformRejectedError) as caught:
        await make_adapter(state, url, tokens, **overrides).send(reply(), http)
    assert caught.value.errcode == errcode
    assert "wrong-secret" not in str(caught.value)
    assert calls(state, "/cgi-bin/message/send") == 0


async def test_slow_api_times_out_as_transient(
    fake: tuple[WeComFakeState, str], tokens: TokenCache, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    adapter = await _primed(state, url, tokens, http, http_timeout_s=0.3)
    state.fail_next(1, status=200, body={"errcode": 0, "msgid": "late"}, delay_s=2)
    with pytest.raises(PlatformUnavailableError, match="unreachable"):
        await adapter.send(reply(), http)


async def test_unreachable_api_is_transient(
    tokens: TokenCache, http: aiohttp.ClientSession
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state = WeComFakeState()
    with pytest.raises(PlatformUnavailableError, match="unreachable"):
        await make_adapter(state, f"http://127.0.0.1:{port}", tokens).send(reply(), http)


async def test_tokens_secrets_and_text_stay_out_of_logs(
    fake: tuple[WeComFakeState, str],
    tokens: TokenCache,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state, url = fake
    adapter = make_adapter(state, url, tokens)
    with caplog.at_level(logging.DEBUG):
        await adapter.send(reply("private words"), http)
        state.expire_current()
        await adapter.send(reply("private words"), http)
    for secret in ("tok-1", "tok-2", state.secret, "private words"):
        assert secret not in caplog.text


# --- TokenCache --------------------------------------------------------------------------------


async def test_concurrent_misses_fetch_once(redis_url: str) -> None:
    # Four clients stand for four processes; twenty gets race on an empty cache.
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(4)]
    caches = [TokenCache(client) for client in clients]
    fetches = 0

    async def fetch() -> tuple[str, float]:
        nonlocal fetches
        fetches += 1
        await asyncio.sleep(0.2)  # slower than the lock's polling
        return f"token-{fetches}", 7200

    try:
        got = await asyncio.gather(*(caches[i % 4].get("token:test:app", fetch) for i in range(20)))
    finally:
        for client in clients:
            await client.aclose()
    assert fetches == 1
    assert got == ["token-1"] * 20


async def test_invalidate_only_deletes_the_bad_token(aredis: aioredis.Redis) -> None:
    cache = TokenCache(aredis)
    issued = iter(["old", "new"])

    async def fetch() -> tuple[str, float]:
        return next(issued), 7200

    assert await cache.get("token:test:app", fetch) == "old"
    assert await cache.invalidate("token:test:app", "old") is True
    assert await cache.get("token:test:app", fetch) == "new"
    # A slow worker that saw "old" fail must not wipe the fresh token.
    assert await cache.invalidate("token:test:app", "old") is False
    assert await aredis.get("token:test:app") == b"new"
    assert await cache.invalidate("token:test:app", "new") is True
    assert await aredis.get("token:test:app") is None


async def test_failed_fetch_releases_the_lock(aredis: aioredis.Redis) -> None:
    cache = TokenCache(aredis, lock_timeout_s=5)

    async def broken() -> tuple[str, float]:
        raise PlatformUnavailableError("down")

    async def working() -> tuple[str, float]:
        return "tok", 7200

    with pytest.raises(PlatformUnavailableError):
        await cache.get("token:test:app", broken)
    assert await aredis.exists("lock:token:test:app") == 0
    assert await cache.get("token:test:app", working) == "tok"


@pytest.mark.parametrize(
    ("expires_in", "low", "high"),
    [(7200, 6890, 6900), (305, 4, 5), (60, 4, 5), (4, 1, 2)],
)
async def test_ttl_expires_early_but_never_late(
    aredis: aioredis.Redis, expires_in: float, low: float, high: float
) -> None:
    cache = TokenCache(aredis, margin_s=300)

    async def fetch() -> tuple[str, float]:
        return "tok", expires_in

    await cache.get("token:test:app", fetch)
    ttl_s = await aredis.pttl("token:test:app") / 1000
    assert low <= ttl_s <= high


async def test_lock_held_elsewhere_times_out_as_transient(aredis: aioredis.Redis) -> None:
    cache = TokenCache(aredis, lock_timeout_s=0.3)
    await aredis.set("lock:token:test:app", "someone-else", ex=30)

    async def fetch() -> tuple[str, float]:
        raise AssertionError("must not fetch without the lock")

    with pytest.raises(TransientError, match="lock"):
        await cache.get("token:test:app", fetch)


async def test_a_resend_asks_wecom_to_drop_a_duplicate(
    fake: tuple[WeComFakeState, str], tokens: TokenCache, http: aiohttp.ClientSession
) -> None:
    state, url = fake
    adapter = make_adapter(state, url, tokens)
    first = await adapter.send(reply("您好"), http)
    # The same answer again (the customer asked again): delivered again.
    second = await adapter.send(reply("您好"), http)
    assert [m["msgid"] for m in state.sent] == [first, second]
    # A resend of a part that may have arrived: WeCom drops it and answers the first msgid.
    again = await adapter.send(dataclasses.replace(reply("您好"), resend=True), http)
    assert again == second
    assert len(state.sent) == 2
    assert state.suppressed == 1
    last = state.matching("/cgi-bin/message/send")[-1].json
    assert last["enable_duplicate_check"] == 1
    assert last["duplicate_check_interval"] == 600
