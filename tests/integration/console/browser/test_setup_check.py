"""The setup check in a real Chromium: an admin opens it from the menu, presses the button,
and reads each check's mark and what to do; the page passes axe."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.integration.console.browser.conftest import axe_violations
from tests.integration.console.conftest import PASSWORD


async def test_admin_runs_the_setup_check(console, fakes, browser, shoot) -> None:
    c = await console()
    c.add("boss", "admin")
    fakes.wecom.untrusted_ip = "203.0.113.9"
    base = str(c.client.make_url("")).rstrip("/")
    # The console's CSP refuses inline scripts, axe's among them: let this one context in.
    page = await (await browser.new_context(locale="zh-CN", bypass_csp=True)).new_page()
    await page.goto(f"{base}/console/login")
    await page.get_by_label("用户名").fill("boss")
    await page.get_by_label("密码").fill(PASSWORD)
    await page.get_by_role("button", name="登录").click()
    await expect(page).to_have_url(re.compile(r"/console/inbox$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("人工接待")

    await page.get_by_role("link", name="系统检查").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("系统检查")
    await page.get_by_role("button", name="运行检查").click()
    await expect(page.get_by_role("alert")).to_contain_text("1 项失败", timeout=30_000)
    token = page.get_by_role("row", name=re.compile(r"^wecom token"))
    await expect(token).to_contain_text("✓ 通过")
    refused = page.get_by_role("row", name=re.compile(r"^wecom trusted IP"))
    await expect(refused).to_contain_text("✗ 失败")
    await expect(refused).to_contain_text("企业可信IP」加入 203.0.113.9")
    await shoot(page, "setup-check")
    assert await axe_violations(page) == []
