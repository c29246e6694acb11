"""The chat widget on another site, in Chromium: a shop page on a different site (localhost vs
127.0.0.1, so the bot's cookie is third-party there) embeds /widget.js; the customer opens the
chat, asks, rates the answer, asks for a person, and the agent's reply reaches the frame."""

from __future__ import annotations

from aiohttp import web
from playwright.async_api import expect

from tests.fakes.base import serve
from tests.integration.console.conftest import csrf_of

NOTICE = "已为您转接人工客服，当前排队第 1 位，请稍候。"  # the only one waiting


def _shop(bot: str) -> web.Application:
    page = (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'><title>青禾商城</title>"
        "</head><body><h1>青禾商城</h1>"
        f"<script src='{bot}/widget.js' data-title='联系客服' async></script></body></html>"
    )

    async def home(_request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", home)
    return app


async def test_the_widget_chats_from_another_site(console, celery_worker, browser, shoot) -> None:
    c = await console()
    celery_worker(c.settings)
    c.add("wang", "agent")
    bot = str(c.client.make_url("")).rstrip("/")
    with serve(_shop(bot)) as shop:
        page = await (await browser.new_context(locale="zh-CN")).new_page()
        await page.goto(shop.replace("127.0.0.1", "localhost") + "/")
        opener = page.get_by_role("button", name="联系客服")
        await opener.click()
        await expect(opener).to_have_attribute("aria-expanded", "true")
        frame = page.frame_locator("#bot-chat-frame")
        await frame.locator("#text").fill("怎么退货")
        await frame.locator("#send").click()
        await expect(frame.locator(".msg.bot").last).to_contain_text("ANSWER:", timeout=20_000)
        await frame.get_by_role("button", name="有帮助").click()
        await expect(frame.get_by_role("button", name="有帮助")).to_have_attribute(
            "aria-pressed", "true"
        )
        await frame.locator("#text").fill("转人工")
        await frame.locator("#send").click()
        await expect(frame.locator(".msg.bot").last).to_have_text(NOTICE, timeout=20_000)

        await c.sign_in("wang")
        inbox = await (await c.client.get("/console/inbox/rows")).text()
        conv = inbox.split('href="/console/conversations/', 1)[1].split('"', 1)[0]
        form = await (await c.client.get(f"/console/conversations/{conv}")).text()
        await c.client.post(
            f"/console/conversations/{conv}/claim", data={"csrf_token": csrf_of(form)}
        )
        sent = await c.client.post(
            f"/console/conversations/{conv}/reply",
            data={"csrf_token": csrf_of(form), "text": "您好，我来帮您办理退货"},
        )
        assert "已发送" in await sent.text()
        await expect(frame.locator(".msg.human")).to_have_text(
            "人工客服：您好，我来帮您办理退货", timeout=15_000
        )
        await shoot(page, "widget")
