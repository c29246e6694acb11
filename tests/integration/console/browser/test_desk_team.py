"""The desk as a team in a real Chromium: an agent goes online and gets the next customer, a
colleague comes online, the conversation is passed to them and they answer; axe checks the
inbox with its presence line and the conversation with its transfer form."""

from __future__ import annotations

import asyncio
import re

from playwright.async_api import expect

from bot.db.engine import get_engine
from tests.integration.console.browser.conftest import axe_violations
from tests.integration.console.browser.test_console import _sign_in
from tests.integration.console.conftest import Console

ASSIGNED = "已为您转接人工客服，客服人员马上为您服务，请稍候。"


async def test_an_online_agent_gets_a_customer_and_passes_it_on(
    console, celery_worker, browser, shoot
) -> None:
    c = await console()
    celery_worker(c.settings)
    c.add("wang", "agent")
    c.add("li", "agent")
    base = str(c.client.make_url("")).rstrip("/")
    # axe's script is inline, which the console's CSP refuses: this context lets it in.
    wang = await (await browser.new_context(locale="zh-CN", bypass_csp=True)).new_page()
    await _sign_in(wang, base, "wang")
    await expect(wang).to_have_url(re.compile(r"/console/inbox$"))
    await expect(wang.locator("form.presence")).to_contain_text("离线")
    await wang.get_by_role("button", name="上线接待").click()
    await expect(wang.locator("form.presence")).to_contain_text("在线")
    await expect(wang.locator("#inbox .team")).to_contain_text("在线 wang")

    customer = await (await browser.new_context(locale="zh-CN")).new_page()
    await customer.goto(f"{base}/")
    await customer.locator("#text").fill("转人工")
    await customer.locator("#send").click()
    await expect(customer.locator(".msg.bot").last).to_have_text(ASSIGNED, timeout=20_000)
    # (The inbox refreshes itself every 4 s, tested elsewhere; a reload is quicker here.)
    await wang.reload()
    row = wang.locator("#inbox tbody tr")
    await expect(row).to_have_class(re.compile(r"\bmine\b"))
    await expect(row).to_contain_text("wang")

    li = await (await browser.new_context(locale="zh-CN")).new_page()
    await _sign_in(li, base, "li")
    await li.get_by_role("button", name="上线接待").click()
    await expect(li.locator("form.presence")).to_contain_text("在线")
    await wang.reload()
    await expect(wang.locator("#inbox .team")).to_contain_text("li、wang")
    await shoot(wang, "presence")
    assert await axe_violations(wang) == []

    await row.get_by_role("link", name="打开").click()
    await expect(wang.get_by_label("转给")).to_contain_text("li（在线）")
    assert await axe_violations(wang) == []
    await shoot(wang, "transfer")
    await wang.get_by_label("转给").select_option("li")
    await wang.get_by_role("button", name="转接").click()
    await expect(wang.get_by_role("status")).to_have_text(
        "已转接，会话已出现在对方的人工接待列表中。"
    )
    await expect(wang.locator("p.state")).to_contain_text("接待人：li")
    await shoot(wang, "transferred")

    # li's open inbox shows the conversation as theirs; they answer, the customer reads it.
    await li.reload()
    await expect(li.locator("#inbox tbody tr.mine")).to_have_count(1)
    await li.locator("#inbox tbody tr.mine").get_by_role("link", name="打开").click()
    await li.get_by_label("回复客户").fill("您好，我是小李，由我继续为您服务")
    await li.get_by_role("button", name="发送").click()
    await expect(customer.locator(".msg.human")).to_have_text(
        "人工客服：您好，我是小李，由我继续为您服务", timeout=10_000
    )


async def test_every_page_shows_how_many_customers_wait_too_long(
    make_settings, make_client, fakes, wecom_app, celery_worker, browser
) -> None:
    """The inbox link carries a badge with the customers waiting unclaimed past the alert, on
    whatever page the agent is, from the page's heartbeat."""
    settings = make_settings(
        **fakes.sections(wecom_app),
        core={"rate_per_minute": 0, "rate_per_day": 0},
        handoff={"wait_alert_s": 1},
    )
    c = Console(
        await make_client(settings), settings, get_engine(settings.core.effective_database_url())
    )
    celery_worker(settings)
    c.add("zhao", "agent")
    base = str(c.client.make_url("")).rstrip("/")
    customer = await (await browser.new_context(locale="zh-CN")).new_page()
    await customer.goto(f"{base}/")
    await customer.locator("#text").fill("转人工")
    await customer.locator("#send").click()
    await expect(customer.locator(".msg.bot").last).to_contain_text("排队第 1 位", timeout=20_000)

    zhao = await (await browser.new_context(locale="zh-CN", bypass_csp=True)).new_page()
    await _sign_in(zhao, base, "zhao")
    await asyncio.sleep(1.1)  # past HANDOFF_WAIT_ALERT_S
    await zhao.goto(f"{base}/console/conversations")  # not the inbox: the badge is everywhere
    badge = zhao.locator("#late-badge")
    await expect(badge).to_have_text("1", timeout=5_000)
    await expect(badge).to_have_attribute("aria-label", "1 位客户等待超时")
    assert await axe_violations(zhao) == []
