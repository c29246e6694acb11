"""Handoff notices to the agents' group: the three robot webhooks over real HTTP.

The fakes (tests/fakes/robot_webhooks.py) recompute the signatures on their side and answer
errors the way the real robots do (HTTP 200 with an errcode).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import aiohttp
import pytest

from bot.handoff import notify
from tests.fakes.base import serve
from tests.fakes.robot_webhooks import RobotFakeState, robot_app

NOTICE = notify.Notice(
    title="客户需要人工客服",
    lines=("**平台**：wecom（default）", "> 客户：转人工", "[查看完整对话](http://x/t)"),
)


@pytest.fixture
def robots() -> Iterator[tuple[RobotFakeState, str]]:
    state = RobotFakeState(dingtalk_secret="SECdingtalk123", feishu_secret="feishu-secret")
    with serve(robot_app(state)) as url:
        yield state, url


def _url(kind: str, state: RobotFakeState, base: str) -> str:
    return {
        "wecom": f"{base}/cgi-bin/webhook/send?key={state.wecom_key}",
        "dingtalk": f"{base}/robot/send?access_token={state.dingtalk_token}",
        "feishu": f"{base}/open-apis/bot/v2/hook/{state.feishu_hook}",
    }[kind]


def _secret(kind: str, state: RobotFakeState) -> str:
    return {"wecom": "", "dingtalk": state.dingtalk_secret, "feishu": state.feishu_secret}[kind]


@pytest.mark.parametrize("kind", ["wecom", "dingtalk", "feishu"])
async def test_each_robot_accepts_the_signed_notice(robots, kind: str) -> None:
    state, base = robots
    async with aiohttp.ClientSession() as http:
        await notify.send(
            http, kind, _url(kind, state, base), _secret(kind, state), NOTICE, now=time.time()
        )
    [body] = state.accepted(kind)
    text = str(body)
    assert "客户需要人工客服" in text
    assert "http://x/t" in text


@pytest.mark.parametrize("kind", ["dingtalk", "feishu"])
async def test_a_wrong_secret_is_refused_and_reported(robots, kind: str) -> None:
    state, base = robots
    async with aiohttp.ClientSession() as http:
        with pytest.raises(notify.NotifyError, match="refused"):
            await notify.send(http, kind, _url(kind, state, base), "wrong", NOTICE, now=time.time())
    assert state.accepted(kind) == []
    assert state.refused[0][1].get("errcode", state.refused[0][1].get("code")) in (310000, 19021)


async def test_a_stale_timestamp_is_refused(robots) -> None:
    state, base = robots
    url = _url("dingtalk", state, base)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(notify.NotifyError, match="310000"):
            await notify.send(
                http, "dingtalk", url, state.dingtalk_secret, NOTICE, now=time.time() - 7200
            )


async def test_a_wrong_wecom_key_is_an_error(robots) -> None:
    _, base = robots
    async with aiohttp.ClientSession() as http:
        with pytest.raises(notify.NotifyError, match="93000"):
            await notify.send(
                http, "wecom", f"{base}/cgi-bin/webhook/send?key=nope", "", NOTICE, now=time.time()
            )


async def test_a_slow_or_broken_robot_times_out_with_a_clear_error(robots) -> None:
    state, base = robots
    state.fail_next(1, status=502, body={"error": "bad gateway"})
    async with aiohttp.ClientSession() as http:
        with pytest.raises(notify.NotifyError, match="HTTP 502"):
            await notify.send(
                http, "wecom", _url("wecom", state, base), "", NOTICE, now=time.time()
            )
        started = time.monotonic()
        with pytest.raises(notify.NotifyError, match="unreachable"):
            # Nothing listens on port 9 (discard): refused at once, or times out.
            await notify.send(
                http, "wecom", "http://127.0.0.1:9/x", "", NOTICE, now=time.time(), timeout_s=0.5
            )
        assert time.monotonic() - started < 3


def test_the_wecom_markdown_is_cut_to_4096_bytes() -> None:
    long = notify.Notice(title="t", lines=("客" * 3000,))
    _, body = notify.build_request("wecom", "http://x", "", long, now=0)
    assert len(body["markdown"]["content"].encode()) <= 4096


def test_signatures_match_known_answers() -> None:
    # Computed independently: python -c 'import hmac,hashlib,base64; ...' for these inputs.
    import base64
    import hashlib
    import hmac

    expected = base64.b64encode(
        hmac.new(b"SECabc", b"1700000000000\nSECabc", hashlib.sha256).digest()
    ).decode()
    assert notify.dingtalk_sign("SECabc", 1700000000000) == expected
    expected_fs = base64.b64encode(
        hmac.new(b"1700000000\nabc", b"", hashlib.sha256).digest()
    ).decode()
    assert notify.feishu_sign("abc", 1700000000) == expected_fs
    url, _ = notify.build_request(
        "dingtalk", "http://h/robot/send?access_token=t", "SECabc", NOTICE, now=1700000000.0
    )
    assert "timestamp=1700000000000" in url
    assert "sign=" in url
    assert "access_token=t" in url
