"""`bot doctor`'s egress checks: a WeCom app whose token works but whose calls answer 60020
shows the IP WeCom saw and where to add it; `DOCTOR_ECHO_IP_URL` shows the address an echo
endpoint sees."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiohttp import web

from adapters import errcodes
from bot.doctor import egress, platforms
from bot.doctor.result import Status
from bot.doctor.run import run_checks
from bot.domain import DEFAULT_APP
from bot.settings import Settings
from tests.fakes.base import serve
from tests.fakes.wechat_mp_api import WeChatMPFakeState, make_wechat_mp_app
from tests.fakes.wecom_api import WeComFakeState
from tests.integration.conftest import WeComApp

SEEN = "203.0.113.7"  # the documentation range: an address the fake says it saw


async def test_trusted_host_may_call(
    make_settings: Callable[..., Settings],
    wecom_app: WeComApp,
    wecom_api: tuple[WeComFakeState, str],
) -> None:
    settings = make_settings(wecom=wecom_app.section(wecom_api[1]))
    result = await egress.check_wecom_trusted_ip(settings, DEFAULT_APP, settings.wecom)
    assert result.status is Status.OK, result
    assert result.detail == "this host may call the API (agent/get: 客服助手)"
    (asked,) = wecom_api[0].matching("/cgi-bin/agent/get")
    assert asked.query["agentid"] == wecom_app.agent_id


async def test_60020_names_the_ip_and_where_to_add_it(
    make_settings: Callable[..., Settings],
    wecom_app: WeComApp,
    wecom_api: tuple[WeComFakeState, str],
) -> None:
    wecom_api[0].untrusted_ip = SEEN
    results = await run_checks(make_settings(wecom=wecom_app.section(wecom_api[1])))
    lines = {r.name: r.line() for r in results}
    assert lines["wecom token"].startswith("✓ wecom token: fetched")  # the token still works
    line = lines["wecom trusted IP"]
    assert line.startswith(
        f"✗ wecom trusted IP: errcode 60020: the token works, but WeCom refuses calls from {SEEN}"
    )
    assert f"企业可信IP」加入 {SEEN}" in line
    assert f"fix: add {SEEN} under 应用管理 → the app → 企业可信IP" in line
    assert lines["egress IP"] == "– egress IP: DOCTOR_ECHO_IP_URL not set"


async def test_wrong_agent_id_is_explained(
    make_settings: Callable[..., Settings],
    wecom_app: WeComApp,
    wecom_api: tuple[WeComFakeState, str],
) -> None:
    settings = make_settings(wecom={**wecom_app.section(wecom_api[1]), "agent_id": "1000099"})
    result = await egress.check_wecom_trusted_ip(settings, DEFAULT_APP, settings.wecom)
    assert result.status is Status.FAIL
    assert result.detail.startswith("agent/get: errcode 40056 — wrong agent id")


async def test_wrong_secret_leaves_it_to_the_token_check(
    make_settings: Callable[..., Settings],
    wecom_app: WeComApp,
    wecom_api: tuple[WeComFakeState, str],
) -> None:
    settings = make_settings(wecom={**wecom_app.section(wecom_api[1]), "secret": "wrong"})
    result = await egress.check_wecom_trusted_ip(settings, DEFAULT_APP, settings.wecom)
    assert result.status is Status.SKIP
    assert "see the token check" in result.detail


def _echo(answer: Callable[[web.Request], web.Response]) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        return answer(request)

    app = web.Application()
    app.router.add_get("/ip", handler)
    return app


@pytest.mark.parametrize(
    "answer",
    [
        lambda r: web.Response(text=f"{r.remote}\n"),
        lambda r: web.json_response({"ip": r.remote}),
        lambda r: web.json_response({"origin": f"{r.remote}, 10.0.0.1"}),
    ],
    ids=["plain text", "json ip", "httpbin origin"],
)
async def test_echo_endpoint_shows_the_egress_ip(
    make_settings: Callable[..., Settings], answer: Callable[[web.Request], web.Response]
) -> None:
    with serve(_echo(answer)) as url:
        settings = make_settings(core={"doctor_echo_ip_url": f"{url}/ip"})
        result = await egress.check_echo_ip(settings)
    assert result.status is Status.OK, result
    assert result.detail.startswith(f"127.0.0.1, as {url}/ip sees this host")


async def test_echo_endpoint_without_an_address_is_a_warning(
    make_settings: Callable[..., Settings],
) -> None:
    with serve(_echo(lambda _: web.Response(text="<html>hello</html>"))) as url:
        settings = make_settings(core={"doctor_echo_ip_url": f"{url}/ip"})
        result = await egress.check_echo_ip(settings)
    assert result.status is Status.WARN
    assert "without an IP address" in result.detail


@pytest.mark.parametrize(
    ("errmsg", "ip"),
    [
        (f"not allow to access from your ip, hint: [1], from ip: {SEEN}, more info at x", SEEN),
        ("not allow to access from your ip, from ip: 2001:db8::1, more info", "2001:db8::1"),
        ("not allow to access from your ip", ""),
        ("from ip: <script>", ""),
        ("from ip: deadbeef, more info", ""),
        (f"invalid ip {SEEN} ipv6 ::ffff:{SEEN}, not in whitelist rid: 1", SEEN),
    ],
)
def test_ip_in_a_60020_errmsg(errmsg: str, ip: str) -> None:
    assert errcodes.seen_ip(errmsg) == ip


async def test_official_account_ip_refusal_names_the_ip(
    make_settings: Callable[..., Settings],
) -> None:
    mp = WeChatMPFakeState(untrusted_ip=SEEN)
    with serve(make_wechat_mp_app(mp)) as url:
        section = {"app_id": mp.app_id, "app_secret": mp.secret, "token": "t", "api_base": url}
        settings = make_settings(wechat_mp=section)
        result = await platforms.check_token(settings, "wechat_mp", DEFAULT_APP, settings.wechat_mp)
    line = result.line()
    assert line.startswith(f"✗ wechat_mp token: errcode 40164, from ip {SEEN} — ")
    assert "IP whitelist" in line
