"""`bot doctor`'s public-URL check for the platforms that POST to it: Feishu's url_verification
challenge (encrypted and signed with the Encrypt Key when set) and DingTalk's signed robot
message, sent to a real web app behind `BOT_PUBLIC_URL`, with one mismatch at a time."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from bot.doctor.public import check_public_verification
from bot.doctor.result import Result, Status
from bot.domain import DEFAULT_APP
from bot.settings import Settings
from bot.web.app import create_app
from tests.fakes.base import serve

KEY = "doctor-encrypt-key"
FEISHU = {
    "app_id": "cli_doctor",
    "app_secret": "feishu-secret",
    "verification_token": "doctor-verification-token",
    "encrypt_key": KEY,
}
DINGTALK = {"app_key": "ding-doctor", "app_secret": "dingtalk-secret"}


async def _check(settings: Settings, platform: str, url: str) -> Result:
    settings.handoff.public_url = url
    section = getattr(settings, platform)
    return await check_public_verification(settings, platform, DEFAULT_APP, section)


@pytest.mark.parametrize("encrypt_key", [KEY, ""], ids=["encrypted", "plaintext"])
async def test_feishu_challenge_is_echoed_by_the_deployment(
    make_settings: Callable[..., Settings], encrypt_key: str
) -> None:
    section = {**FEISHU, "encrypt_key": encrypt_key}
    with serve(create_app(make_settings(feishu=section))) as url:
        result = await _check(make_settings(feishu=section), "feishu", url)
    assert result.status is Status.OK, result
    assert result.detail == f"{url}/webhooks/feishu answers the URL check"


@pytest.mark.parametrize(
    "theirs",
    [{"verification_token": "an-older-token"}, {"encrypt_key": "another-encrypt-key"}],
    ids=["other verification token", "other encrypt key"],
)
async def test_feishu_deployment_with_other_keys_fails(
    make_settings: Callable[..., Settings], theirs: dict[str, Any]
) -> None:
    with serve(create_app(make_settings(feishu={**FEISHU, **theirs}))) as url:
        result = await _check(make_settings(feishu=FEISHU), "feishu", url)
    assert result.status is Status.FAIL
    assert "refused the check signed with this host's keys (HTTP 401)" in result.detail
    assert "another Verification Token / Encrypt Key than this host's FEISHU_*" in result.fix_en


async def test_dingtalk_signed_robot_post_is_accepted_and_answers_no_one(
    make_settings: Callable[..., Settings],
) -> None:
    with serve(create_app(make_settings(dingtalk=DINGTALK))) as url:
        result = await _check(make_settings(dingtalk=DINGTALK), "dingtalk", url)
    assert result.status is Status.OK, result
    assert result.detail == f"{url}/webhooks/dingtalk accepts a signed robot message"


async def test_dingtalk_deployment_with_another_secret_fails(
    make_settings: Callable[..., Settings],
) -> None:
    theirs = {**DINGTALK, "app_secret": "the-old-secret"}
    with serve(create_app(make_settings(dingtalk=theirs))) as url:
        result = await _check(make_settings(dingtalk=DINGTALK), "dingtalk", url)
    assert result.status is Status.FAIL
    assert "(HTTP 401)" in result.detail
    assert "another AppSecret than this host's DINGTALK_*" in result.fix_en


@pytest.mark.parametrize("platform", ["feishu", "dingtalk"])
async def test_another_service_at_the_url_fails(
    make_settings: Callable[..., Settings], platform: str
) -> None:
    async def welcome(_: web.Request) -> web.Response:
        return web.Response(text="<html>welcome</html>", content_type="text/html")

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", welcome)
    settings = make_settings(feishu=FEISHU, dingtalk=DINGTALK)
    with serve(other) as url:
        result = await _check(settings, platform, url)
    assert result.status is Status.FAIL
    assert "answered HTTP 200 without the " in result.detail
    assert "forward /webhooks/ to bot serve" in result.fix_en


@pytest.mark.parametrize("platform", ["feishu", "dingtalk"])
async def test_own_address_unreachable_is_a_warning(
    make_settings: Callable[..., Settings], platform: str
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = await _check(make_settings(feishu=FEISHU, dingtalk=DINGTALK), platform, closed)
    assert result.status is Status.WARN
    assert "NAT" in result.fix_en


@pytest.mark.parametrize("platform", ["feishu", "dingtalk"])
async def test_stream_mode_needs_no_callback_url(
    make_settings: Callable[..., Settings], platform: str
) -> None:
    sections = {"feishu": FEISHU, "dingtalk": DINGTALK}
    settings = make_settings(**{platform: {**sections[platform], "stream": True}})
    result = await _check(settings, platform, "http://127.0.0.1:1")
    assert result.status is Status.SKIP
    assert result.line().startswith(f"– {platform} public URL: {platform.upper()}_STREAM=true")


EVENTS = {"token": "dingtalk-event-token", "aes_key": "b" * 43}


async def test_dingtalk_event_subscription_answers_check_url(
    make_settings: Callable[..., Settings],
) -> None:
    section = {**DINGTALK, **EVENTS}
    with serve(create_app(make_settings(dingtalk=section))) as url:
        result = await _check(make_settings(dingtalk=section), "dingtalk", url)
    assert result.status is Status.OK, result
    assert result.detail == (
        f"{url}/webhooks/dingtalk accepts a signed robot message and answers the event "
        "subscription's check_url"
    )


@pytest.mark.parametrize(
    "theirs",
    [{**EVENTS, "token": "an-older-event-token"}, {}],
    ids=["other event token", "no event subscription there"],
)
async def test_dingtalk_event_keys_that_differ_fail(
    make_settings: Callable[..., Settings], theirs: dict[str, str]
) -> None:
    with serve(create_app(make_settings(dingtalk={**DINGTALK, **theirs}))) as url:
        result = await _check(make_settings(dingtalk={**DINGTALK, **EVENTS}), "dingtalk", url)
    assert result.status is Status.FAIL
    assert "refused the check signed with this host's keys" in result.detail
    assert "Token / aes_key of the event subscription" in result.fix_en
