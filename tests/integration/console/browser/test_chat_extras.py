"""In Chromium: the chat page's welcome and suggested questions (a click asks one), the cited
documents listed under the answer with their link, the same in the widget on another site;
the dashboard's cost and breaker columns and the channels page's token check. axe-core on
each: no serious or critical violation."""

from __future__ import annotations

from aiohttp import web
from playwright.async_api import Page, expect
from sqlmodel import Session

from bot.db import records, usage
from bot.db.engine import get_engine
from bot.domain import InboundMessage, Platform
from tests.fakes.base import serve
from tests.integration.console.browser.conftest import axe_violations
from tests.integration.console.conftest import PASSWORD, Console

QUESTION = "发票抬头填错了能重开吗"
ANSWER = (
    "订单签收后，在“我的订单－订单详情”中点击“申请开票”，"
    "填写抬头（个人或单位名称）；单位抬头需要填写税号。"
)
LINK = "https://help.example.com/invoice"
WELCOME = "您好，我是智能客服助手，请问有什么可以帮您？"


async def _sign_in(page: Page, base: str, username: str) -> None:
    await page.goto(f"{base}/console/login")
    await page.get_by_label("用户名").fill(username)
    await page.get_by_label("密码").fill(PASSWORD)
    await page.get_by_role("button", name="登录").click()


def _shop(bot: str) -> web.Application:
    page = (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'><title>青禾商城</title>"
        f"</head><body><h1>青禾商城</h1><script src='{bot}/widget.js' async></script></body></html>"
    )

    async def home(_request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", home)
    return app


async def test_suggestions_ask_and_sources_show_under_the_answer(
    make_settings, make_client, celery_worker, fakes, wecom_app, browser, shoot
) -> None:
    settings = make_settings(
        **fakes.sections(wecom_app),
        webchat={
            "title": "青禾客服",
            "suggestions": f"{QUESTION}|怎么退货",
            "source_links": {"policies.md": LINK},
        },
    )
    client = await make_client(settings)
    celery_worker(settings)
    base = str(client.make_url("")).rstrip("/")

    page = await (await browser.new_context(locale="zh-CN")).new_page()
    await page.goto(f"{base}/")
    await expect(page).to_have_title("青禾客服")
    await expect(page.locator(".msg.bot.welcome")).to_have_text(WELCOME)
    suggestions = page.get_by_role("group", name="猜你想问").get_by_role("button")
    await expect(suggestions).to_have_text([QUESTION, "怎么退货"])
    assert await axe_violations(page) == []

    fakes.vllm.script(ANSWER)
    await suggestions.first.click()
    await expect(page.locator(".msg.user")).to_have_text(QUESTION)
    answer = page.locator(".msg.bot").last
    await expect(answer).to_have_text(ANSWER, timeout=20_000)  # no "参考：" line in the text
    source = page.locator(".sources").get_by_role("link", name="policies.md · 发票")
    await expect(source).to_have_attribute("href", LINK)
    await expect(page.locator(".sources + .rate")).to_have_count(1)  # rating under the list
    assert await axe_violations(page) == []
    await shoot(page, "chat-sources")

    # The widget on another site: the configured title, the same welcome and suggestions.
    with serve(_shop(base)) as shop:
        site = await (await browser.new_context(locale="zh-CN")).new_page()
        await site.goto(shop.replace("127.0.0.1", "localhost") + "/")
        await site.get_by_role("button", name="青禾客服").click()
        frame = site.frame_locator("#bot-chat-frame")
        await expect(frame.locator(".msg.bot.welcome")).to_have_text(WELCOME)
        await frame.get_by_role("button", name="怎么退货").click()
        await expect(frame.locator(".msg.bot").last).to_have_text(
            "ANSWER: 怎么退货", timeout=20_000
        )
        await shoot(site, "widget-suggestion")


async def test_dashboard_costs_breakers_and_token_check_in_the_browser(
    make_settings, make_client, fakes, wecom_app, open_runtime, browser, shoot
) -> None:
    sections = fakes.sections(wecom_app)
    sections["vllm"].update(price_per_1k_tokens=0.002, price_per_1k_output_tokens=0.006)
    settings = make_settings(**sections)
    c = Console(
        await make_client(settings), settings, get_engine(settings.core.effective_database_url())
    )
    c.add("boss", "admin")
    msg = InboundMessage(Platform.WEB, "default", "e1", "web-cost", "web-cost", "hi")
    with Session(c.engine) as s:
        conv = records.ensure_conversation(s, msg)
        usage.record(
            s,
            conversation_id=conv.id or 0,
            message_id=1,
            purpose="answer",
            backend="vllm",
            prompt_tokens=1000,
            completion_tokens=500,
        )
    rt = await open_runtime(settings)  # publishes this process's breakers
    assert rt.router is not None
    fakes.vllm.fail_next(3, status=503)
    for _ in range(3):
        await rt.router.complete([{"role": "user", "content": "你好"}], timeout_s=5)

    base = str(c.client.make_url("")).rstrip("/")
    # The console's CSP refuses inline scripts, axe's among them: let this context in.
    page = await (await browser.new_context(locale="zh-CN", bypass_csp=True)).new_page()
    await _sign_in(page, base, "boss")
    await page.goto(f"{base}/console/dashboard?days=1")
    await expect(page.locator("#model-table")).to_contain_text("0.0050")
    vllm = page.locator('#breakers tr[data-backend="vllm"]')
    for _ in range(30):  # published within half a second of the change
        if "已熔断" in await vllm.inner_text():
            break
        await page.reload()
    await expect(vllm).to_contain_text("已熔断")
    assert await axe_violations(page) == []
    await shoot(page, "dashboard-models")

    await page.goto(f"{base}/console/channels")
    await page.get_by_role("button", name="检查 token：wecom").click()
    await expect(page.get_by_role("status")).to_contain_text("凭据可用")
    await expect(page.locator(".token-check")).to_have_text("可用（有效期 7200 秒）")
    assert await axe_violations(page) == []
    await shoot(page, "channels-token")
    assert len(fakes.wecom.matching("/cgi-bin/gettoken")) == 1
