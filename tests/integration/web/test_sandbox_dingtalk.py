"""The sandbox stand-in of the DingTalk API (bot/web/sandbox/dingtalk.py): served only with
BOT_SANDBOX, it keeps the rules the bot relies on and refuses what DingTalk would; its list of
what it was asked stays readable from any position as old entries are dropped."""

from __future__ import annotations

import json
from typing import Any

from adapters.dingtalk import cards
from bot.web.sandbox import journal

BASE = "/sandbox/dingtalk"
TEMPLATE = "sandbox-ai-card.schema"
APP = {"app_key": "ding-sandbox", "app_secret": "sandbox-secret", "card_template_id": TEMPLATE}


async def _client(make_settings, make_client, fakes, wecom_app, *, sandbox: bool) -> Any:
    sections: dict[str, Any] = fakes.sections(wecom_app)
    sections["core"] = {"sandbox": sandbox}
    sections["dingtalk"] = APP
    return await make_client(make_settings(**sections))


async def test_it_is_not_served_without_the_sandbox(
    make_settings, make_client, fakes, wecom_app
) -> None:
    client = await _client(make_settings, make_client, fakes, wecom_app, sandbox=False)
    assert (await client.post(f"{BASE}/v1.0/oauth2/accessToken", json={})).status == 404
    assert (await client.get(f"{BASE}/sent")).status == 404


async def test_cards_keep_dingtalks_rules(make_settings, make_client, fakes, wecom_app) -> None:
    client = await _client(make_settings, make_client, fakes, wecom_app, sandbox=True)

    async def call(method: str, path: str, body: Any, token: str = "") -> tuple[int, Any]:
        headers = {"x-acs-dingtalk-access-token": token} if token else {}
        resp = await client.request(method, f"{BASE}{path}", json=body, headers=headers)
        return resp.status, await resp.json()

    wrong = {"appKey": APP["app_key"], "appSecret": "guessed"}
    status, answer = await call("POST", "/v1.0/oauth2/accessToken", wrong)
    assert (status, answer["code"]) == (400, "invalidClientIdOrSecret")
    right = {"appKey": APP["app_key"], "appSecret": APP["app_secret"]}
    token = (await call("POST", "/v1.0/oauth2/accessToken", right))[1]["accessToken"]

    track = cards.out_track_id("default", "msg1")

    def create(template: str) -> dict[str, Any]:
        return cards.create_body(
            template_id=template,
            track_id=track,
            content_key="content",
            text="您",
            robot_code=APP["app_key"],
            is_group=True,
            conversation_id="cid1",
            staff_id="u1",
        )

    status, answer = await call("POST", "/v1.0/card/instances/createAndDeliver", create(TEMPLATE))
    assert (status, answer["code"]) == (401, "InvalidAuthentication")  # no token
    status, answer = await call(
        "POST", "/v1.0/card/instances/createAndDeliver", create("other.schema"), token
    )
    assert (status, answer["code"]) == (400, "invalidParameter.cardTemplate.notFound")
    status, answer = await call(
        "POST", "/v1.0/card/instances/createAndDeliver", create(TEMPLATE), token
    )
    assert status == 200
    assert answer["result"]["deliverResults"][0]["success"] is True
    status, answer = await call(
        "POST", "/v1.0/card/instances/createAndDeliver", create(TEMPLATE), token
    )
    assert (status, answer["code"]) == (400, "invalidParameter.outTrackId.duplicate")

    update = cards.streaming_body(track, "content", "您好")
    assert (await call("PUT", "/v1.0/card/streaming", update, token))[0] == 200
    again = {**update, "content": "您好吗"}  # the same guid
    status, answer = await call("PUT", "/v1.0/card/streaming", again, token)
    assert (status, answer["code"]) == (400, "invalidParameter.guid.duplicate")
    final = cards.streaming_body(track, "content", "您好！", finalize=True)
    assert (await call("PUT", "/v1.0/card/streaming", final, token))[0] == 200
    late = cards.streaming_body(track, "content", "您好！还有")
    status, answer = await call("PUT", "/v1.0/card/streaming", late, token)
    assert (status, answer["code"]) == (400, "invalidParameter.card.finalized")
    unknown = cards.streaming_body("nope", "content", "x")
    status, answer = await call("PUT", "/v1.0/card/streaming", unknown, token)
    assert (status, answer["code"]) == (400, "invalidParameter.outTrackId.notExist")
    done = cards.status_body(track, "content", "您好！", cards.FLOW_FINISHED)
    assert (await call("PUT", "/v1.0/card/instances", done, token))[0] == 200

    markdown = {"msgtype": "markdown", "markdown": {"title": "回复", "text": "纯文本"}}
    status, answer = await call("POST", "/robot/sendBySession?session=msg2", markdown)
    assert answer == {"errcode": 0, "errmsg": "ok"}
    status, answer = await call("POST", "/robot/sendBySession", {"msgtype": "text"})
    assert answer["errcode"] == 40035
    oto = {
        "robotCode": APP["app_key"],
        "userIds": ["u2"],
        "msgKey": "sampleMarkdown",
        "msgParam": json.dumps({"title": "回复", "text": "一对一"}),
    }
    status, answer = await call("POST", "/v1.0/robot/oToMessages/batchSend", oto, "stale")
    assert (status, answer["code"]) == (401, "InvalidAuthentication")
    status, answer = await call("POST", "/v1.0/robot/oToMessages/batchSend", oto, token)
    assert status == 200
    assert answer["invalidStaffIdList"] == []

    sent = await (await client.get(f"{BASE}/sent", params={"since": "0"})).json()
    seen = [
        (e["kind"], e.get("op") or e.get("via"), e.get("text") or e.get("flow_status"))
        for e in sent["events"]
    ]
    assert seen == [
        ("card", "create", None),
        ("card", "update", "您好"),
        ("card", "update", "您好！"),
        ("card", "status", cards.FLOW_FINISHED),
        ("message", "session", "纯文本"),
        ("message", "oto", "一对一"),
    ]
    created = sent["events"][0]
    assert created["at_users"] == ["u1"]
    assert created["params"] == {"content": "您", "flowStatus": cards.FLOW_INPUTING}
    assert sent["events"][2]["finalize"] is True
    assert sent["next"] == 6
    later = await (await client.get(f"{BASE}/sent", params={"since": "4"})).json()
    assert [e["text"] for e in later["events"]] == ["纯文本", "一对一"]
    assert (await client.get(f"{BASE}/sent", params={"since": "x"})).status == 400


async def test_the_list_reads_on_from_where_a_reader_was_after_trimming(aredis) -> None:
    for n in range(1, 6):
        assert await journal.append(aredis, "sandbox:test", {"n": n}, keep=3) == n
    events, following = await journal.since(aredis, "sandbox:test", 3)
    assert [e["n"] for e in events] == [4, 5]
    assert following == 5
    # A reader that fell behind the kept entries gets what is left, and moves on.
    events, following = await journal.since(aredis, "sandbox:test", 1)
    assert [e["n"] for e in events] == [3, 4, 5]
    assert following == 5
    assert await journal.since(aredis, "sandbox:test", 5) == ([], 5)
    await journal.append(aredis, "sandbox:test", {"n": 6}, keep=3)
    events, following = await journal.since(aredis, "sandbox:test", 5)
    assert [e["n"] for e in events] == [6]
    assert following == 6
    assert await aredis.llen("sandbox:test") == 3
