"""The channels page's "check token" button over HTTP, against the fake platform APIs: the
WeCom app's credentials work (one gettoken call, its lifetime shown); an Official Account
with a wrong secret shows WeChat's own error; a refusal injected by the fake shows its
errmsg; unknown apps, missing CSRF and non-admins are refused."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from bot.db.engine import get_engine
from tests.fakes.base import serve
from tests.fakes.wechat_mp_api import WeChatMPFakeState, make_wechat_mp_app
from tests.integration.console.conftest import Console, csrf_of


@pytest.fixture
def mp_api() -> Iterator[tuple[WeChatMPFakeState, str]]:
    state = WeChatMPFakeState()
    with serve(make_wechat_mp_app(state)) as url:
        yield state, url


def _cell(html: str, channel: str) -> str:
    """The token cell of one channel's row."""
    row = re.search(rf"<tr>\s*<td>{re.escape(channel)}</td>(.*?)</tr>", html, re.S)
    assert row, f"no row {channel}"
    return re.findall(r"<td>(.*?)</td>", row.group(1), re.S)[-1]


async def test_check_token_asks_the_platform_once_and_shows_its_answer(
    make_settings, make_client, fakes, wecom_app, mp_api
) -> None:
    mp, mp_url = mp_api
    settings = make_settings(
        **fakes.sections(wecom_app),
        wechat_mp={
            "app_id": mp.app_id,
            "app_secret": "not-the-secret",
            "token": "mp-callback-token",
            "api_base": mp_url,
        },
    )
    c = Console(
        await make_client(settings), settings, get_engine(settings.core.effective_database_url())
    )
    c.add("boss", "admin")
    await c.sign_in("boss")
    page = await (await c.client.get("/console/channels")).text()
    assert 'aria-label="检查 token：wecom"' in page
    token = csrf_of(page)

    async def check(platform: str) -> str:
        resp = await c.client.post(
            "/console/channels/check-token",
            data={"csrf_token": token, "platform": platform, "app": "default"},
        )
        assert resp.status == 200
        return await resp.text()

    html = await check("wecom")
    assert "可用（有效期 7200 秒）" in _cell(html, "wecom")
    assert 'role="status">wecom：平台发放了 access token' in html
    assert len(fakes.wecom.matching("/cgi-bin/gettoken")) == 1

    html = await check("wechat_mp")
    cell = _cell(html, "wechat_mp")
    assert "失败" in cell
    assert "invalid appsecret" in cell  # WeChat's own words
    assert "errcode=40125" in cell
    assert 'role="alert"' in html
    (asked,) = mp.matching("/cgi-bin/stable_token")
    assert asked.json["force_refresh"] is False  # never revokes the workers' token

    fakes.wecom.fail_next(
        1, status=200, body={"errcode": 60020, "errmsg": "not allow to access from your ip"}
    )
    cell = _cell(await check("wecom"), "wecom")
    assert "not allow to access from your ip" in cell
    assert "errcode=60020" in cell


async def test_check_token_refusals(console) -> None:
    c = await console()
    c.add("boss", "admin")
    c.add("li", "editor")
    await c.sign_in("boss")
    token = await c.csrf("/console/channels")
    unknown = await c.client.post(
        "/console/channels/check-token",
        data={"csrf_token": token, "platform": "wecom", "app": "nope"},
    )
    assert unknown.status == 404
    no_csrf = await c.client.post(
        "/console/channels/check-token", data={"platform": "wecom", "app": "default"}
    )
    assert no_csrf.status == 403
    await c.client.post("/console/logout", data={"csrf_token": token})
    await c.sign_in("li")
    token = await c.csrf("/console/knowledge")
    editor = await c.client.post(
        "/console/channels/check-token",
        data={"csrf_token": token, "platform": "wecom", "app": "default"},
    )
    assert editor.status == 403
