"""The auto-reply rules page over HTTP: the file's rules read-only, the database's rules
added, refused with the reason and the typed values kept, tried, edited, switched off and
on, deleted; each change audited and seen by a worker at its next message; roles and CSRF."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

from bot import keys
from bot.console import audit
from bot.domain import InboundMessage, Platform
from bot.pipeline import autoreply
from tests.integration.console.conftest import csrf_of

REPLY = "每天 9:00-18:00 营业"


def _msg(text: str) -> InboundMessage:
    return InboundMessage(
        platform=Platform.WECOM,
        app="default",
        event_id=f"e-{time.monotonic_ns()}",
        conversation_id="u1",
        sender_id="u1",
        text=text,
        sent_at=datetime.now(UTC),
    )


def _rule(**fields: str) -> dict[str, str]:
    base = {"match": "contains", "pattern": "营业时间", "reply": REPLY, "platform": "*"}
    return {**base, "app": "*", "priority": "100", **fields}


async def test_an_editor_keeps_the_rules_and_workers_follow(console, aredis, tmp_path) -> None:
    path = tmp_path / "rules.json"
    rules = [{"match": "exact", "pattern": "你好", "reply": "您好，请问有什么可以帮您？"}]
    path.write_text(json.dumps({"rules": rules}), encoding="utf-8")
    c = await console(autoreply_file=str(path))
    c.add("li", "editor")
    await c.sign_in("li")
    client, settings = c.client, c.settings
    page = await (await client.get("/console/rules")).text()
    assert 'href="/console/rules" aria-current="page"' in page  # in the navigation
    file_rows = re.search(r'<table class="list" id="file-rules">(.*?)</table>', page, re.S)
    assert file_rows
    assert "只读" in file_rows.group(1)
    assert "您好，请问有什么可以帮您？" in file_rows.group(1)
    assert "还没有规则" in page
    token = csrf_of(page)

    # Refusals: no CSRF token; a regex RE2 refuses; an empty reply; a reply too long.
    refused = await client.post("/console/rules", data=_rule())
    assert refused.status == 403
    bad = await client.post(
        "/console/rules", data={"csrf_token": token, **_rule(match="regex", pattern="(营业)\\1")}
    )
    text = await bad.text()
    assert bad.status == 400
    assert "匹配内容有误" in text
    assert "backreferences" in text
    assert 'value="(营业)\\1"' in text  # what was typed is still there
    assert re.search(r'id="rule-pattern"[^>]*aria-invalid="true"', text)
    assert '<option value="regex" selected>' in text
    bad = await client.post(
        "/console/rules", data={"csrf_token": token, **_rule(match="regex", pattern="营业(时间")}
    )
    assert bad.status == 400
    assert "not a valid regular expression" in await bad.text()
    empty = await client.post("/console/rules", data={"csrf_token": token, **_rule(reply=" ")})
    assert empty.status == 400
    assert "回复内容有误" in await empty.text()
    long_reply = "营业时间很长" * 120  # 2160 bytes
    too_long = await client.post(
        "/console/rules", data={"csrf_token": token, **_rule(reply=long_reply)}
    )
    text = await too_long.text()
    assert too_long.status == 400
    assert "longer than 2048 bytes" in text
    assert long_reply in text
    assert await aredis.get(keys.AUTOREPLY_VERSION) is None  # nothing was saved
    assert await autoreply.find_reply(_msg("请问营业时间？"), settings, aredis) is None

    added = await client.post("/console/rules", data={"csrf_token": token, **_rule()})
    assert "规则已添加" in await added.text()
    assert await aredis.get(keys.AUTOREPLY_VERSION) == b"1"
    assert await autoreply.find_reply(_msg("请问营业时间？"), settings, aredis) == REPLY
    rule_id = re.search(r'href="/console/rules/(\d+)"', await added.text()).group(1)

    # Try it: the database rule, the file's rule, no rule.
    tried = await (
        await client.get("/console/rules", params={"text": "请问营业时间？", "platform": "wecom"})
    ).text()
    result = tried.split('id="try-result"', 1)[1].split("</div>", 1)[0]
    assert f'href="/console/rules/{rule_id}"' in result
    assert REPLY in result
    tried = await (await client.get("/console/rules", params={"text": "你好"})).text()
    assert "文件第 1 条" in tried.split('id="try-result"', 1)[1]
    tried = await (await client.get("/console/rules", params={"text": "发票怎么开"})).text()
    assert "没有规则匹配" in tried

    # Edit (a bad edit first: refused, kept), then switch off and on, then delete.
    bad = await client.post(
        f"/console/rules/{rule_id}", data={"csrf_token": token, **_rule(priority="soon")}
    )
    assert bad.status == 400
    assert "优先级有误" in await bad.text()
    assert 'value="soon"' in await bad.text()
    saved = await client.post(
        f"/console/rules/{rule_id}", data={"csrf_token": token, **_rule(reply="9 点到 18 点")}
    )
    assert "规则已保存" in await saved.text()
    assert await autoreply.find_reply(_msg("营业时间"), settings, aredis) == "9 点到 18 点"
    off = await client.post(f"/console/rules/{rule_id}/disable", data={"csrf_token": token})
    assert "规则已停用" in await off.text()
    assert await autoreply.find_reply(_msg("营业时间"), settings, aredis) is None
    tried = await (await client.get("/console/rules", params={"text": "营业时间"})).text()
    assert "没有规则匹配" in tried
    on = await client.post(f"/console/rules/{rule_id}/enable", data={"csrf_token": token})
    assert "规则已启用" in await on.text()
    assert await autoreply.find_reply(_msg("营业时间"), settings, aredis) == "9 点到 18 点"
    gone = await client.post(f"/console/rules/{rule_id}/delete", data={"csrf_token": token})
    assert "规则已删除" in await gone.text()
    assert await autoreply.find_reply(_msg("营业时间"), settings, aredis) is None
    assert await aredis.get(keys.AUTOREPLY_VERSION) == b"5"

    # Unknown ids: 404 for every action.
    assert (await client.get(f"/console/rules/{rule_id}")).status == 404
    for action in ("", "/disable", "/enable", "/delete"):
        resp = await client.post(
            f"/console/rules/{rule_id}{action}", data={"csrf_token": token, **_rule()}
        )
        assert resp.status == 404, action

    entries = {e.action: e for e in audit.recent(c.engine) if e.target == f"rule:{rule_id}"}
    assert set(entries) == {"rule.add", "rule.edit", "rule.disable", "rule.enable", "rule.delete"}
    assert all(e.actor == "li" for e in entries.values())
    edit = entries["rule.edit"]
    assert json.loads(edit.before)["reply"] == REPLY
    assert json.loads(edit.after)["reply"] == "9 点到 18 点"
    assert json.loads(entries["rule.disable"].after)["enabled"] is False
    assert entries["rule.delete"].after == ""


async def test_agents_may_not_touch_the_rules(console) -> None:
    c = await console()
    c.add("wang", "agent")
    await c.sign_in("wang")
    token = await c.csrf()
    assert "/console/rules" not in await (await c.client.get("/console/conversations")).text()
    assert (await c.client.get("/console/rules")).status == 403
    resp = await c.client.post("/console/rules", data={"csrf_token": token, **_rule()})
    assert resp.status == 403
