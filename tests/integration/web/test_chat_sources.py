"""The web chat's extras over HTTP: an answer's cited documents come as structured `sources`
(JSON and SSE), with a link where one is configured, and the text without the "参考：" line
that WeCom still gets; the chat page and the widget carry the configured title, welcome
text and suggested questions, safely embedded."""

from __future__ import annotations

import json

from sqlmodel import Session, select

from bot.db.engine import get_engine
from bot.db.models import Message
from tests.integration.conftest import wait_for
from tests.integration.webchat import as_user, sse_events

QUESTION = "发票抬头填错了能重开吗"
# Says the invoice passage of the sample policies.md back: the agent cites it.
ANSWER = (
    "订单签收后，在“我的订单－订单详情”中点击“申请开票”，"
    "填写抬头（个人或单位名称）；单位抬头需要填写税号。"
)
LINK = "https://help.example.com/invoice"
LINE = "\n\n参考：policies.md · 发票"


async def test_sources_are_structured_on_the_web_and_a_line_elsewhere(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    settings = make_settings(
        **fakes.sections(wecom_app), webchat={"source_links": {"policies.md": LINK}}
    )
    client = await make_client(settings)
    celery_worker(settings)

    fakes.vllm.script(ANSWER)
    resp = await client.post(
        "/api/chat", json={**await as_user(client, "web-s1"), "text": QUESTION}
    )
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert data["reply"] == ANSWER
    assert data["sources"] == [{"title": "policies.md", "section": "发票", "url": LINK}]

    fakes.vllm.script(ANSWER)
    resp = await client.post(
        "/api/chat",
        json={**await as_user(client, "web-s2"), "text": QUESTION},
        headers={"Accept": "text/event-stream"},
    )
    events = sse_events(await resp.text())
    kinds = [kind for kind, _ in events]
    assert kinds[-3:] == ["message", "sources", "done"]
    assert "".join(d["text"] for k, d in events if k == "delta") == ANSWER  # no line streamed
    assert [d["text"] for k, d in events if k == "message"] == [ANSWER]
    assert events[-2][1]["sources"] == [{"title": "policies.md", "section": "发票", "url": LINK}]

    # The console's transcript keeps the whole text, as every platform gets it.
    with Session(get_engine(settings.core.effective_database_url())) as s:
        stored = [m.text for m in s.exec(select(Message).where(Message.direction == "out"))]
    assert stored == [ANSWER + LINE, ANSWER + LINE]

    # WeCom shows no list: the plain-text line stays.
    fakes.vllm.script(ANSWER)
    query, body = wecom_app.callback(QUESTION, user="zs-sources")
    assert (await client.post("/webhooks/wecom", params=query, data=body)).status == 200
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    assert fakes.wecom.sent[0]["content"] == ANSWER + LINE


async def test_without_a_link_the_title_is_plain_and_the_base_url_links(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    settings = make_settings(**fakes.sections(wecom_app))
    client = await make_client(settings)
    celery_worker(settings)
    fakes.vllm.script(ANSWER)
    resp = await client.post(
        "/api/chat", json={**await as_user(client, "web-s3"), "text": QUESTION}
    )
    assert (await resp.json())["sources"] == [
        {"title": "policies.md", "section": "发票", "url": None}
    ]
    based = make_settings(webchat={"source_base_url": "https://help.example.com/kb/"})
    assert based.webchat.source_url("售后 政策.md") == (
        "https://help.example.com/kb/%E5%94%AE%E5%90%8E%20%E6%94%BF%E7%AD%96.md"
    )


async def test_the_page_and_widget_carry_the_configured_words(make_settings, make_client) -> None:
    hostile = "营业时间？</script><script>alert(1)</script>"
    client = await make_client(
        make_settings(
            webchat={
                "title": "青禾客服",
                "welcome": "欢迎光临",
                "suggestions": f"怎么退货 | 发票怎么开 | {hostile}",
            }
        )
    )
    page = await (await client.get("/")).text()
    raw = page.split('<script type="application/json" id="chat-config">', 1)[1]
    raw = raw.split("</script>", 1)[0]
    assert "<" not in raw  # nothing in the JSON can close the script element
    assert json.loads(raw) == {
        "title": "青禾客服",
        "welcome": "欢迎光临",
        "suggestions": ["怎么退货", "发票怎么开", hostile],
    }
    widget = await (await client.get("/widget.js")).text()
    assert '|| "青禾客服";' in widget

    plain = await (await make_client(make_settings())).get("/")
    defaults = (await plain.text()).split('id="chat-config">', 1)[1].split("</script>", 1)[0]
    # Generic by default: a greeting, no suggested questions until the operator picks some.
    assert json.loads(defaults) == {
        "title": "在线客服",
        "welcome": "您好，我是智能客服助手，请问有什么可以帮您？",
        "suggestions": [],
    }
