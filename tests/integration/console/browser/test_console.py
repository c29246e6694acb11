"""The console as people use it, in a real Chromium: sign in, the handoff round trip with a
web chat customer and a WeCom customer, refusals, language, accessibility."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect
from sqlmodel import Session, select

from bot.db import desk_notes
from bot.db.models import Conversation
from tests.integration.conftest import wait_for
from tests.integration.console.browser.conftest import axe_violations
from tests.integration.console.conftest import PASSWORD

NOTICE = "已为您转接人工客服，当前排队第 1 位，请稍候。"  # the only one waiting
RETURNED = "人工服务已结束，接下来由智能助手为您服务。"


async def _sign_in(page: Page, base: str, username: str, password: str = PASSWORD) -> None:
    await page.goto(f"{base}/console/login")
    await page.get_by_label("用户名").fill(username)
    await page.get_by_label("密码").fill(password)
    await page.get_by_role("button", name="登录").click()


async def test_agent_answers_a_web_chat_and_a_wecom_customer(
    console, celery_worker, fakes, wecom_app, browser, shoot
) -> None:
    c = await console()
    celery_worker(c.settings)
    c.add("wang", "agent")
    desk_notes.add_canned(c.engine, "问候", "您好，我是客服小王，请问有什么可以帮您？", "boss")
    base = str(c.client.make_url("")).rstrip("/")

    customer = await (await browser.new_context(locale="zh-CN")).new_page()
    await customer.goto(f"{base}/")
    await customer.locator("#text").fill("转人工")
    await customer.locator("#send").click()
    await expect(customer.locator(".msg.bot").last).to_have_text(NOTICE, timeout=20_000)

    agent = await (await browser.new_context(locale="zh-CN")).new_page()
    await _sign_in(agent, base, "wang")
    await expect(agent).to_have_url(re.compile(r"/console/inbox$"))
    row = agent.locator("#inbox tbody tr")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("客户要求")
    await shoot(agent, "inbox")
    # A WeCom customer asks too: the open inbox shows them without a reload.
    query, body = wecom_app.callback("转人工", user="wx-cust-9")
    await c.client.post("/webhooks/wecom", params=query, data=body)
    await expect(row).to_have_count(2, timeout=15_000)
    await expect(agent.locator("#inbox")).to_contain_text("wx-cust-9")

    with Session(c.engine) as s:
        web_conv = s.exec(select(Conversation).where(Conversation.platform == "web")).one()
    await agent.locator(f'#inbox a[href="/console/conversations/{web_conv.id}"]').click()
    await agent.get_by_role("button", name="认领").click()
    await expect(agent.get_by_role("status")).to_have_text("已认领，客户的新消息会显示在这里。")
    # A canned reply inserted with one click, then sent with Ctrl+Enter.
    await agent.get_by_label("快捷回复").select_option(label="问候")
    await expect(agent.get_by_label("回复客户")).to_have_value(
        "您好，我是客服小王，请问有什么可以帮您？"
    )
    await agent.get_by_label("回复客户").press("Control+Enter")
    await expect(agent.get_by_role("status")).to_have_text("已发送。")
    await expect(customer.locator(".msg.human")).to_have_text(
        "人工客服：您好，我是客服小王，请问有什么可以帮您？", timeout=10_000
    )
    # The customer writes back; the agent's open conversation shows it live.
    await customer.locator("#text").fill("我的订单号是 A1001")
    await customer.locator("#send").click()
    await expect(agent.locator("#messages")).to_contain_text("我的订单号是 A1001", timeout=10_000)
    await shoot(agent, "conversation")
    await shoot(customer, "customer")
    await agent.get_by_role("button", name="结束人工，交还机器人").click()
    await expect(agent.get_by_role("status")).to_have_text("已交还机器人。")
    await expect(customer.locator(".msg.human").last).to_have_text(
        f"人工客服：{RETURNED}", timeout=10_000
    )

    # The WeCom customer, through the fake WeCom API.
    await agent.goto(f"{base}/console/inbox")
    await agent.locator("#inbox a").first.click()
    await agent.get_by_role("button", name="认领").click()
    await agent.get_by_label("回复客户").fill("企业微信的客户您好")
    await agent.get_by_role("button", name="发送").click()
    await expect(agent.get_by_role("status")).to_have_text("已发送。")
    await wait_for(lambda: fakes.wecom.sent[-1]["content"] == "企业微信的客户您好")
    assert fakes.wecom.sent[-1]["touser"] == "wx-cust-9"


FAQ = (
    "question,answer,similar\n"
    "滤网多久换一次,建议每 6 个月更换一次滤网。,滤网什么时候换\n"
    "净化器有噪音怎么办,请检查滤网是否装好。,净化器声音大\n"
).encode()
GUIDE = "# 保修说明\n\n整机保修一年，电机保修三年。\n".encode()


async def test_editor_uploads_sees_progress_and_tests_a_question(
    console, celery_worker, browser, shoot
) -> None:
    c = await console()
    celery_worker(c.settings)
    c.add("li", "editor")
    base = str(c.client.make_url("")).rstrip("/")
    page = await (await browser.new_context(locale="zh-CN")).new_page()
    await _sign_in(page, base, "li")
    await expect(page).to_have_url(re.compile(r"/console/knowledge$"))
    await page.get_by_label("知识库名称").fill("shop")
    await page.get_by_role("button", name="打开").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("shop")
    await expect(page.locator("#docs")).to_contain_text("这个知识库还没有文档")

    # Three files at once, one of them a broken PDF: each shows its own outcome.
    await page.locator("#kb-files").set_input_files(
        [
            {"name": "faq.csv", "mimeType": "text/csv", "buffer": FAQ},
            {"name": "保修.md", "mimeType": "text/markdown", "buffer": GUIDE},
            {"name": "broken.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.7 no"},
        ]
    )
    items = page.locator("ul.uploads li")
    await expect(items).to_have_count(3)
    await expect(items.filter(has_text="faq.csv")).to_contain_text(
        "已添加 · 2 个片段", timeout=20_000
    )
    await expect(items.filter(has_text="保修.md")).to_contain_text("已添加", timeout=20_000)
    await expect(items.filter(has_text="broken.pdf")).to_contain_text("失败", timeout=20_000)
    # The documents table refreshed itself when the jobs finished.
    docs = page.locator("#docs tbody tr")
    await expect(docs).to_have_count(3, timeout=10_000)
    await expect(page.locator("#docs")).to_contain_text("保修.md")
    await shoot(page, "uploaded")

    await page.get_by_label("输入一个客户可能问的问题").fill("滤网要多久换")
    await page.get_by_role("button", name="测试").click()
    first = page.locator("ol.hits li").first
    await expect(first).to_contain_text("滤网多久换一次")
    await expect(first).to_contain_text("建议每 6 个月更换一次滤网。")
    await shoot(page, "hit-test")

    await page.get_by_role("link", name="faq.csv").click()
    await expect(page.locator("ol.chunks li")).to_have_count(2)
    await expect(page.locator("ol.chunks")).to_contain_text("相似问法： 滤网什么时候换")
    await shoot(page, "chunks")


async def test_a_chat_question_is_found_with_its_passages(
    console, celery_worker, browser, shoot
) -> None:
    c = await console()
    celery_worker(c.settings)
    c.add("boss", "admin")
    base = str(c.client.make_url("")).rstrip("/")
    customer = await (await browser.new_context(locale="zh-CN")).new_page()
    await customer.goto(f"{base}/")
    await customer.locator("#text").fill("退货运费谁出")
    await customer.locator("#send").click()
    await expect(customer.locator(".msg.bot").last).to_contain_text("ANSWER:", timeout=20_000)
    await customer.get_by_role("button", name="有帮助").click()
    await expect(customer.get_by_role("button", name="有帮助")).to_have_attribute(
        "aria-pressed", "true"
    )

    page = await (await browser.new_context(locale="zh-CN")).new_page()
    await _sign_in(page, base, "boss")
    await page.get_by_role("link", name="会话记录").click()
    await page.get_by_label("回答类型").select_option(label="模型回答")
    await page.get_by_role("button", name="筛选").click()
    await expect(page.locator("table.list tbody tr")).to_have_count(1)
    await page.locator("table.list tbody a").first.click()
    details = page.locator("details.turn").first
    await details.locator("summary").click()
    await expect(details).to_contain_text("检索到的片段")
    await expect(details.locator("ol.hits li").first).to_contain_text("退货运费谁出")
    # The live refresh keeps the details open while they are being read.
    await page.wait_for_timeout(3500)
    await expect(details).to_have_attribute("open", "")
    await shoot(page, "transcript")

    # The dashboard draws its charts with the vendored ECharts, under the console's CSP.
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    await page.get_by_role("link", name="数据看板").click()
    await expect(page.locator("#chart-per-day canvas")).to_have_count(1)
    await expect(page.locator("#chart-outcomes canvas")).to_have_count(1)
    await expect(page.locator("#outcome-table")).to_contain_text("模型回答")
    await expect(page.locator(".tiles")).to_contain_text("1 / 0客户评价")
    assert problems == []
    await shoot(page, "dashboard")


async def test_refusals_as_people_see_them(console, browser, shoot) -> None:
    c = await console()
    c.add("wang", "agent")
    base = str(c.client.make_url("")).rstrip("/")
    page = await (await browser.new_context(locale="zh-CN")).new_page()
    await page.goto(f"{base}/console/inbox")
    await expect(page).to_have_url(re.compile(r"/console/login\?next="))
    await _sign_in(page, base, "wang", "not my password")
    await expect(page.get_by_role("alert")).to_have_text("用户名或密码错误。")
    await shoot(page, "wrong-password")
    await _sign_in(page, base, "wang")
    await expect(page).to_have_url(re.compile(r"/console/inbox$"))
    await page.goto(f"{base}/console/accounts")
    await expect(page.get_by_role("heading", level=1)).to_have_text("没有权限")
    await page.get_by_role("link", name="English").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    await page.goto(f"{base}/console/inbox")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Handoff inbox")
    await shoot(page, "english")


async def test_every_page_passes_axe(console, celery_worker, browser, shoot) -> None:
    c = await console()
    celery_worker(c.settings)
    c.add("boss", "admin")
    base = str(c.client.make_url("")).rstrip("/")
    from tests.integration.webchat import as_user

    await c.client.post("/api/chat", json={**await as_user(c.client, "web-a11y"), "text": "转人工"})
    with Session(c.engine) as s:
        conv = s.exec(select(Conversation)).one()
    # The console's CSP refuses inline scripts, axe's among them: let this one context in.
    page = await (await browser.new_context(locale="zh-CN", bypass_csp=True)).new_page()
    await page.goto(f"{base}/console/login")
    found = {"login": await axe_violations(page)}
    await _sign_in(page, base, "boss")
    await expect(page).to_have_url(re.compile(r"/console/inbox$"))
    for name, path in [
        ("inbox", "/console/inbox"),
        ("conversations", "/console/conversations"),
        ("conversation", f"/console/conversations/{conv.id}"),
        ("accounts", "/console/accounts"),
        ("audit", "/console/audit"),
        ("knowledge", "/console/knowledge"),
        ("knowledge-base", "/console/knowledge/default?q=退货"),
        ("conversations-filtered", "/console/conversations?outcome=handoff"),
        ("dashboard", "/console/dashboard"),
        ("unanswered", "/console/knowledge/unanswered"),
        ("channels", "/console/channels"),
        ("canned", "/console/canned"),
        ("faq", "/console/knowledge/default/faq"),
        ("synonyms", "/console/knowledge/synonyms"),
        ("faq-entry", "/console/knowledge/default/faq/0/new?question=运费多少"),
    ]:
        await page.goto(f"{base}{path}")
        found[name] = await axe_violations(page)
        await shoot(page, name)
    await page.goto(f"{base}/")
    found["chat"] = await axe_violations(page)
    assert {name: v for name, v in found.items() if v} == {}
