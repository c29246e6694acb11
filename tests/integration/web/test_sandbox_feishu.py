"""The sandbox stand-in of the Feishu API (bot/web/sandbox/feishu.py): served only with
BOT_SANDBOX, it keeps the rules the bot relies on and refuses what Feishu would."""

from __future__ import annotations

import json
from typing import Any

from adapters.feishu import cards
from bot import keys
from bot.web.sandbox import feishu as sandbox_feishu
from bot.web.sandbox import journal

API = "/sandbox/feishu/open-apis"


async def _client(make_settings, make_client, fakes, wecom_app, *, sandbox: bool) -> Any:
    sections: dict[str, Any] = fakes.sections(wecom_app)
    sections["core"] = {"sandbox": sandbox}
    return await make_client(make_settings(**sections))


async def test_it_is_not_served_without_the_sandbox(
    make_settings, make_client, fakes, wecom_app
) -> None:
    client = await _client(make_settings, make_client, fakes, wecom_app, sandbox=False)
    resp = await client.post(f"{API}/auth/v3/tenant_access_token/internal", json={})
    assert resp.status == 404
    assert (await client.get("/sandbox/feishu/sent")).status == 404


async def test_cards_keep_feishus_rules(make_settings, make_client, fakes, wecom_app) -> None:
    client = await _client(make_settings, make_client, fakes, wecom_app, sandbox=True)

    async def call(method: str, path: str, body: Any, token: str = "") -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = await client.request(method, f"{API}{path}", json=body, headers=headers)
        return dict(await resp.json())

    assert (await call("POST", "/cardkit/v1/cards", {"type": "card_json"}))["code"] == 99991663
    token = (await call("POST", "/auth/v3/tenant_access_token/internal", {}))["tenant_access_token"]
    bad = await call("POST", "/cardkit/v1/cards", {"type": "card_json", "data": "{no"}, token)
    assert bad["code"] == 200220
    made = await call(
        "POST", "/cardkit/v1/cards", {"type": "card_json", "data": cards.card_json("你")}, token
    )
    card_id = made["data"]["card_id"]
    content = f"/cardkit/v1/cards/{card_id}/elements/{cards.ELEMENT_ID}/content"
    assert (await call("PUT", content, {"content": "你好", "sequence": 2}, token))["code"] == 0
    late = await call("PUT", content, {"content": "你", "sequence": 1}, token)
    assert late["code"] == 300317  # a sequence must grow
    settings = {"settings": cards.closing_settings(), "sequence": 3}
    assert (await call("PATCH", f"/cardkit/v1/cards/{card_id}/settings", settings, token))[
        "code"
    ] == 0
    closed = await call("PUT", content, {"content": "你好吗", "sequence": 4}, token)
    assert closed["code"] == 300309  # no text after streaming mode is off
    shown = {
        "msg_type": "interactive",
        "content": json.dumps({"type": "card", "data": {"card_id": card_id}}),
    }
    assert (await call("POST", "/im/v1/messages/om_1/reply", shown, token))["code"] == 0
    text = {"msg_type": "text", "content": json.dumps({"text": "纯文本"})}
    assert (await call("POST", "/im/v1/messages/om_2/reply", text, token))["code"] == 0

    sent = await (await client.get("/sandbox/feishu/sent", params={"since": "0"})).json()
    seen = [(e["kind"], e.get("op"), e.get("text"), e.get("reply_to")) for e in sent["events"]]
    assert seen == [
        ("card", "create", "你", None),
        ("card", "update", "你好", None),
        ("card", "close", None, None),
        ("message", None, None, "om_1"),
        ("message", None, "纯文本", "om_2"),
    ]
    assert sent["next"] == 5
    assert (await client.get("/sandbox/feishu/sent", params={"since": "x"})).status == 400


async def test_the_list_reads_on_past_its_first_thousand_entries(
    make_settings, make_client, fakes, wecom_app, aredis
) -> None:
    # A long trial: the list is full (KEEP entries) and a reader is at its end.
    for n in range(sandbox_feishu.KEEP):
        await journal.append(aredis, keys.SANDBOX_FEISHU_SENT, {"kind": "old", "n": n}, 10_000)
    client = await _client(make_settings, make_client, fakes, wecom_app, sandbox=True)
    resp = await client.post(f"{API}/auth/v3/tenant_access_token/internal", json={})
    token = (await resp.json())["tenant_access_token"]
    text = {"msg_type": "text", "content": json.dumps({"text": "第一千零一条"})}
    headers = {"Authorization": f"Bearer {token}"}
    await client.post(f"{API}/im/v1/messages/om_9/reply", json=text, headers=headers)
    since = {"since": str(sandbox_feishu.KEEP)}
    sent = await (await client.get("/sandbox/feishu/sent", params=since)).json()
    assert [e.get("text") for e in sent["events"]] == ["第一千零一条"]
    assert sent["next"] == sandbox_feishu.KEEP + 1
    assert await aredis.llen(keys.SANDBOX_FEISHU_SENT) == sandbox_feishu.KEEP  # still trimmed
