"""The console's setup check over HTTP, against the fake WeCom API and model servers: nothing
runs until an admin presses the button; each check shows its mark and what to do in the
page's language; a failure injected in the fake shows with its fix; a run that takes too
long ends with one line instead of a hanging page; only admins, only with the CSRF token."""

from __future__ import annotations

import re

import pytest

from bot.console.pages import setup_check
from tests.integration.console.conftest import Console

SEEN = "203.0.113.9"


def _row(html: str, name: str) -> list[str]:
    """The cells (result, detail, fix) of one check's row."""
    found = re.search(
        rf'<tr data-status="\w+">\s*<th scope="row">{re.escape(name)}</th>(.*?)</tr>', html, re.S
    )
    assert found, f"no row {name!r}"
    return [cell.strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", found.group(1), re.S)]


async def _admin(console) -> Console:
    c = await console()
    c.add("boss", "admin")
    await c.sign_in("boss")
    return c


async def test_checks_run_on_demand_with_marks_and_fixes(console, fakes) -> None:
    c = await _admin(console)
    page = await (await c.client.get("/console/setup-check")).text()
    assert '<a href="/console/setup-check" aria-current="page">系统检查</a>' in page
    assert "尚未运行" in page
    assert 'id="setup-check"' not in page
    assert fakes.wecom.matching("/cgi-bin/gettoken") == []  # showing the page asks no one

    fakes.wecom.untrusted_ip = SEEN
    resp = await c.client.post("/console/setup-check", data={"csrf_token": await c.csrf()})
    assert resp.status == 200
    html = await resp.text()
    assert _row(html, "wecom token")[0] == "✓ 通过"
    assert _row(html, "model vllm")[0] == "✓ 通过"
    result, detail, fix = _row(html, "wecom trusted IP")
    assert result == "✗ 失败"
    assert f"refuses calls from {SEEN}" in detail
    assert f"企业可信IP」加入 {SEEN}" in fix
    assert re.search(r'role="alert">检查完成：1 项失败，\d+ 项需要注意', html)
    assert len(fakes.wecom.matching("/cgi-bin/agent/get")) == 1

    fakes.wecom.untrusted_ip = ""
    await c.client.get("/console/setup-check?lang=en")
    html = await (
        await c.client.post("/console/setup-check", data={"csrf_token": await c.csrf()})
    ).text()
    assert _row(html, "wecom trusted IP")[0] == "✓ passed"
    assert _row(html, "BOT_PUBLIC_URL")[0] == "! warning"
    assert "set it to the public https address" in _row(html, "BOT_PUBLIC_URL")[2]
    assert re.search(r'role="status">Done: \d+ checks, none failed.', html)


async def test_a_run_past_its_bound_ends_with_one_line(
    console, fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = await _admin(console)
    fakes.vllm.delay_s = 5.0  # the model answers slowly: the run outlives its bound
    monkeypatch.setattr(setup_check, "SETUP_CHECK_TIMEOUT_S", 0.5)
    resp = await c.client.post("/console/setup-check", data={"csrf_token": await c.csrf()})
    html = await resp.text()
    assert resp.status == 200
    assert _row(html, "doctor")[:2] == ["✗ 失败", "timed out"]
    assert "bot doctor" in _row(html, "doctor")[2]


async def test_only_admins_with_the_csrf_token(console) -> None:
    c = await console()
    c.add("boss", "admin")
    c.add("li", "editor")
    await c.sign_in("boss")
    no_csrf = await c.client.post("/console/setup-check", data={})
    assert no_csrf.status == 403
    token = await c.csrf()
    await c.client.post("/console/logout", data={"csrf_token": token})
    await c.sign_in("li")
    assert (await c.client.get("/console/setup-check")).status == 403
    token = await c.csrf("/console/knowledge")
    refused = await c.client.post("/console/setup-check", data={"csrf_token": token})
    assert refused.status == 403
    assert "系统检查" not in await (await c.client.get("/console/knowledge")).text()
