"""Auto-reply rules: the admin API (real HTTP, real Redis, SQLite) and the rules a worker sees.

`find_reply` is what the worker calls before the agent; these tests call it in this process
after changing rules through the API or the file, as a running worker would see them.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.domain import InboundMessage, MessageKind, Platform
from bot.pipeline import autoreply

TOKEN = "admin-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _msg(text: str, *, event: str = "", key: str = "") -> InboundMessage:
    return InboundMessage(
        platform=Platform.WECHAT_MP,
        app="default",
        event_id=f"e-{time.monotonic_ns()}",
        conversation_id="oU",
        sender_id="oU",
        text=text,
        sent_at=datetime.now(UTC),
        kind=MessageKind.EVENT if event == "subscribe" else MessageKind.TEXT,
        event=event,
        event_key=key,
    )


@pytest.fixture
def settings(make_settings, fakes, wecom_app):
    return make_settings(**fakes.sections(wecom_app), core={"admin_token": TOKEN})


async def test_rules_api_validates_and_workers_see_changes_at_once(
    settings, make_client, aredis
) -> None:
    client = await make_client(settings)
    # A worker that already cached "no rules".
    assert await autoreply.find_reply(_msg("营业时间"), settings, aredis) is None

    resp = await client.post("/api/autoreply/rules", json={"match": "exact", "pattern": "x"})
    assert resp.status == 401
    resp = await client.post(
        "/api/autoreply/rules",
        json={"match": "regex", "pattern": "营业(时间", "reply": "x"},
        headers=AUTH,
    )
    assert resp.status == 400
    assert "not a valid regular expression" in (await resp.json())["error"]
    resp = await client.post("/api/autoreply/rules", data=b"[1]", headers=AUTH)
    assert resp.status == 400

    resp = await client.post(
        "/api/autoreply/rules",
        json={"match": "contains", "pattern": "营业时间", "reply": "每天 9:00-18:00"},
        headers=AUTH,
    )
    assert resp.status == 201, await resp.text()
    rule_id = (await resp.json())["rule"]["id"]
    assert await autoreply.find_reply(_msg("请问营业时间？"), settings, aredis) == "每天 9:00-18:00"

    listed = await (await client.get("/api/autoreply/rules", headers=AUTH)).json()
    assert [(r["id"], r["match"], r["platform"]) for r in listed["rules"]] == [
        (rule_id, "contains", "*")
    ]
    resp = await client.delete(f"/api/autoreply/rules/{rule_id}", headers=AUTH)
    assert resp.status == 204
    assert (await client.delete(f"/api/autoreply/rules/{rule_id}", headers=AUTH)).status == 404
    assert await autoreply.find_reply(_msg("请问营业时间？"), settings, aredis) is None


async def test_rules_api_changes_and_switches_a_rule(settings, make_client, aredis) -> None:
    client = await make_client(settings)
    rule = {"match": "exact", "pattern": "发票", "reply": "请在订单页申请"}
    resp = await client.post("/api/autoreply/rules", json={**rule, "enabled": False}, headers=AUTH)
    assert resp.status == 201
    created = (await resp.json())["rule"]
    assert created["enabled"] is False
    assert await autoreply.find_reply(_msg("发票"), settings, aredis) is None  # switched off
    url = f"/api/autoreply/rules/{created['id']}"
    resp = await client.put(url, json={**rule, "reply": "x", "enabled": "yes"}, headers=AUTH)
    assert resp.status == 400
    resp = await client.put(url, json={**rule, "match": "regex", "pattern": "(?=x)"}, headers=AUTH)
    assert resp.status == 400
    assert "lookarounds" in (await resp.json())["error"]
    resp = await client.put(url, json={**rule, "enabled": True}, headers=AUTH)
    assert (await resp.json())["rule"]["enabled"] is True
    assert await autoreply.find_reply(_msg("发票"), settings, aredis) == "请在订单页申请"
    # Without "enabled" a change keeps the rule as it is.
    resp = await client.put(url, json={**rule, "reply": "订单页 → 申请发票"}, headers=AUTH)
    assert (await resp.json())["rule"]["enabled"] is True
    assert await autoreply.find_reply(_msg("发票"), settings, aredis) == "订单页 → 申请发票"
    resp = await client.put("/api/autoreply/rules/999", json=rule, headers=AUTH)
    assert resp.status == 404
    listed = await (await client.get("/api/autoreply/rules", headers=AUTH)).json()
    assert [(r["pattern"], r["enabled"]) for r in listed["rules"]] == [("发票", True)]


async def test_rules_file_is_reloaded_when_it_changes(
    make_settings, tmp_path: Path, aredis
) -> None:
    path = tmp_path / "rules.json"
    path.write_text(
        json.dumps({"rules": [{"match": "exact", "pattern": "你好", "reply": "您好"}]}),
        encoding="utf-8",
    )
    settings = make_settings(core={"autoreply_file": str(path)})
    assert await autoreply.find_reply(_msg("你好"), settings, aredis) == "您好"
    path.write_text(
        json.dumps({"rules": [{"match": "exact", "pattern": "你好", "reply": "欢迎光临"}]}),
        encoding="utf-8",
    )
    later = time.time() + 5
    os.utime(path, (later, later))
    assert await autoreply.find_reply(_msg("你好"), settings, aredis) == "欢迎光临"
    # A half-written file keeps the last good rules.
    path.write_text("{", encoding="utf-8")
    os.utime(path, (later + 5, later + 5))
    assert await autoreply.find_reply(_msg("你好"), settings, aredis) == "欢迎光临"


async def test_default_reply_only_while_no_model_is_configured(
    make_settings, fakes, wecom_app, tmp_path: Path, aredis
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rules]]\nmatch = "default"\nreply = "客服下班了，明天回复您"\n', encoding="utf-8"
    )
    off = make_settings(core={"autoreply_file": str(path)})
    assert await autoreply.find_reply(_msg("在吗"), off, aredis) == "客服下班了，明天回复您"
    assert await autoreply.find_reply(_msg("", event="subscribe"), off, aredis) is None
    on = make_settings(**fakes.sections(wecom_app), core={"autoreply_file": str(path)})
    assert await autoreply.find_reply(_msg("在吗"), on, aredis) is None


async def test_menu_click_replies_from_settings(make_settings, aredis) -> None:
    settings = make_settings(
        wechat_mp={
            "app_id": "wx1",
            "app_secret": "s",
            "token": "t",
            "menu_replies": {"V1001_HOURS": "营业时间 9:00-18:00"},
        }
    )
    click = _msg("V1001_HOURS", event="CLICK", key="V1001_HOURS")
    assert await autoreply.find_reply(click, settings, aredis) == "营业时间 9:00-18:00"
    other = _msg("V2", event="CLICK", key="V2")
    assert await autoreply.find_reply(other, settings, aredis) is None
