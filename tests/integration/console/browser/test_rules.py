"""The auto-reply rules and customer bindings pages in a real Chromium: an admin adds a rule,
tries a customer's message against it, switches it off, has a bad regex refused in place, and
binds a user; axe checks the rules page (tried, and with the refusal) and the bindings page."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.integration.console.browser.conftest import axe_violations
from tests.integration.console.browser.test_console import _sign_in

REPLY = "每天 9:00-18:00 营业，节假日照常。"


async def test_an_admin_adds_tries_and_disables_a_rule_then_binds_a_user(
    console, browser, shoot
) -> None:
    c = await console()
    c.add("li", "admin")
    base = str(c.client.make_url("")).rstrip("/")
    # axe's script is inline, which the console's CSP refuses: this context lets it in.
    page = await (await browser.new_context(locale="zh-CN", bypass_csp=True)).new_page()
    await _sign_in(page, base, "li")
    await page.get_by_role("link", name="自动回复").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("自动回复规则")

    await page.get_by_label("匹配方式").select_option("contains")
    await page.get_by_label("匹配内容").fill("营业时间")
    await page.get_by_label("回复内容").fill(REPLY)
    await page.get_by_role("button", name="新增规则").click()
    await expect(page.get_by_role("status")).to_contain_text("规则已添加")
    row = page.locator("#rules tbody tr")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("包含关键词")

    await page.get_by_label("客户消息").fill("请问你们的营业时间？")
    await page.get_by_role("button", name="试一试", exact=True).click()
    result = page.locator("#try-result")
    await expect(result).to_contain_text("会回答的规则：")
    await expect(result).to_contain_text(REPLY)
    await shoot(page, "tried")
    assert await axe_violations(page) == []

    await row.get_by_role("button", name=re.compile(r"^停用")).click()
    await expect(page.get_by_role("status")).to_contain_text("规则已停用")
    await expect(row).to_have_class("off")
    await expect(row).to_contain_text("已停用")
    await page.get_by_label("客户消息").fill("请问你们的营业时间？")
    await page.get_by_role("button", name="试一试", exact=True).click()
    await expect(page.locator("#try-result")).to_contain_text("没有规则匹配")
    await shoot(page, "disabled")

    # A regex RE2 refuses: said next to the field, what was typed kept.
    await page.get_by_label("匹配方式").select_option("regex")
    await page.get_by_label("匹配内容").fill("(退|换)货\\1")
    await page.get_by_label("回复内容").fill("请在订单页申请退换货")
    await page.get_by_role("button", name="新增规则").click()
    await expect(page.locator("#rule-pattern-error")).to_contain_text("匹配内容有误")
    await expect(page.get_by_label("匹配内容")).to_have_value("(退|换)货\\1")
    await expect(page.get_by_label("回复内容")).to_have_value("请在订单页申请退换货")
    await shoot(page, "refused")
    assert await axe_violations(page) == []

    await page.get_by_role("link", name="客户绑定").click()
    await page.get_by_label("平台", exact=True).select_option("wecom")
    await page.get_by_label("用户 ID", exact=True).fill("zhangsan")
    await page.get_by_label("客户编号", exact=True).fill("C1001")
    await page.get_by_role("button", name="添加绑定").click()
    await expect(page.get_by_role("status")).to_have_text("已绑定。")
    await expect(page.locator("#bindings tbody tr")).to_contain_text("C1001")
    await shoot(page, "bindings")
    assert await axe_violations(page) == []
