"""DingTalk Stream frames, ACKs and the reconnect schedule (docs/protocols/dingtalk.md)."""

from __future__ import annotations

import json

import pytest

from adapters import reconnect
from adapters.dingtalk import stream as ds
from bot.errors import PayloadError

ROBOT_FRAME = {
    "specVersion": "1.0",
    "type": "CALLBACK",
    "headers": {
        "appId": "ding-app",
        "connectionId": "c1",
        "contentType": "application/json",
        "messageId": "m-1",
        "time": "1690000000000",
        "topic": "/v1.0/im/bot/messages/get",
    },
    "data": json.dumps({"msgId": "msg1", "msgtype": "text", "text": {"content": "hi"}}),
}


def test_parse_frame_reads_type_headers_and_data() -> None:
    frame = ds.parse_frame(json.dumps(ROBOT_FRAME))
    assert frame.type == "CALLBACK"
    assert frame.message_id == "m-1"
    assert frame.topic == ds.BOT_MESSAGE_TOPIC
    assert json.loads(frame.data)["msgId"] == "msg1"


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        json.dumps({"type": "SYSTEM", "data": "{}"}),
        json.dumps({"type": "SYSTEM", "headers": {"topic": "ping"}, "data": "{}"}),
        json.dumps({"headers": {"messageId": "x"}, "data": "{}"}),
        json.dumps({"type": "CALLBACK", "headers": {"messageId": "x"}, "data": {"a": 1}}),
    ],
)
def test_bad_frames_are_payload_errors(raw: str) -> None:
    with pytest.raises(PayloadError):
        ds.parse_frame(raw)


def test_ack_has_the_sdk_shape() -> None:
    assert ds.build_ack("m-1") == {
        "code": 200,
        "headers": {"messageId": "m-1", "contentType": "application/json"},
        "message": "OK",
        "data": '{"response": null}',
    }
    nack = ds.build_ack("m-2", code=500, message="internal error")
    assert (nack["code"], nack["headers"]["messageId"]) == (500, "m-2")
    assert json.loads(nack["data"]) == {"response": None}


def test_backoff_doubles_from_one_second_up_to_sixty() -> None:
    top = [reconnect.backoff_delay(n, rand=0.999999) for n in range(10)]
    assert [round(d) for d in top] == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    low = [reconnect.backoff_delay(n, rand=0.0) for n in range(8)]
    assert low == [0.5, 1, 2, 4, 8, 16, 30, 30]
    # Huge attempt numbers do not overflow.
    assert reconnect.backoff_delay(10_000, rand=0.5) == 45


def test_connect_url_quotes_the_ticket() -> None:
    assert ds.connect_url("wss://gw/connect", "a+b/c=") == "wss://gw/connect?ticket=a%2Bb%2Fc%3D"
    assert ds.connect_url("wss://gw/c?x=1", "t") == "wss://gw/c?x=1&ticket=t"
