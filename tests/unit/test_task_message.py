"""The `handle_message` task message intake writes: what Celery itself would send."""

from __future__ import annotations

import json

from celery import Celery

from bot.broker import HANDLE_MESSAGE, handle_message_parts


def _joined(payload: dict, summary: str, seq: int) -> dict:
    head, mid, tail = handle_message_parts(json.dumps(payload, ensure_ascii=False), summary)
    return json.loads(f"{head}{seq}{mid}{seq}{tail}")


def test_the_message_has_celerys_shape_and_our_values() -> None:
    payload = {"text": '运费多少？\n"引号" \\ 反斜杠', "route": {"to": "u1"}}
    summary = '[<wecom/default 7"0\\01>]'
    message = _joined(payload, summary, 42)
    celery = Celery("reference", set_as_current=False).amqp.as_task_v2(
        "an-id", HANDLE_MESSAGE, args=[payload], kwargs={"seq": 42}
    )
    assert set(celery.headers) <= set(message["headers"])
    assert set(celery.properties) <= set(message["properties"])
    body = json.loads(message["body"])
    assert body == json.loads(json.dumps(list(celery.body)))
    headers, properties = message["headers"], message["properties"]
    assert headers["task"] == HANDLE_MESSAGE
    assert headers["argsrepr"] == summary
    assert headers["kwargsrepr"] == "{'seq': 42}"
    task_id = headers["id"]
    assert task_id == headers["root_id"] == properties["correlation_id"]
    assert properties["delivery_tag"] == task_id
    assert properties["body_encoding"] is None
    assert message["content-type"] == "application/json"


def test_every_message_has_its_own_id() -> None:
    ids = {_joined({"n": i}, "s", 1)["headers"]["id"] for i in range(50)}
    assert len(ids) == 50
