"""pbbp2.Frame by hand: known bytes (from the protobuf wire format), round trips, bad input."""

from __future__ import annotations

import pytest

from adapters.feishu.ws.client import ClientConfig, _Parts, ack_frame, ping_frame
from adapters.feishu.ws.frame import Frame, decode, encode
from bot.errors import PayloadError

# SeqID=1 LogID=2 service=3 method=1 headers=[type: event] payload="{}", field by field:
# 08 01 | 10 02 | 18 03 | 20 01 | 2a 0d (0a 04 "type" 12 05 "event") | 42 02 "{}"
KNOWN = bytes.fromhex("08011002180320012a0d0a047479706512056576656e7442027b7d")


def test_known_bytes_both_ways() -> None:
    frame = Frame(
        seq_id=1, log_id=2, service=3, method=1, headers=[("type", "event")], payload=b"{}"
    )
    assert encode(frame) == KNOWN
    assert decode(KNOWN) == frame


def test_round_trip_with_every_field_and_large_numbers() -> None:
    frame = Frame(
        seq_id=300,
        log_id=(1 << 64) - 1,
        service=-1,
        method=0,
        headers=[("type", "pong"), ("中文", "值"), ("empty", "")],
        payload_encoding="gzip",
        payload_type="json",
        payload=bytes(range(256)),
        log_id_new="log-x",
    )
    raw = encode(frame)
    assert raw[:3] == bytes.fromhex("08ac02")  # 300 as a varint
    assert decode(raw) == frame


def test_required_fields_are_written_even_when_zero() -> None:
    assert encode(Frame()) == bytes.fromhex("0800100018002000")


def test_unknown_fields_are_skipped() -> None:
    extra = (
        bytes.fromhex("7d01020304") + bytes.fromhex("790102030405060708") + bytes.fromhex("800105")
    )
    assert decode(KNOWN + extra).payload == b"{}"


@pytest.mark.parametrize(
    "raw",
    [
        KNOWN[:-1],  # truncated payload
        bytes.fromhex("0801100218032001") + b"\x2a\x02\x0a\x00",  # header without value
        bytes.fromhex("080110021803"),  # no method
        bytes.fromhex("08ffffffffffffffffffff01"),  # overlong varint
        bytes.fromhex("0f"),  # wire type 7
        bytes.fromhex("0801100218032001") + b"\x2a\x04\x0a\x02\xff\xfe",  # key not UTF-8
        b"\x00",  # field number 0
    ],
)
def test_malformed_frames_are_payload_errors(raw: bytes) -> None:
    with pytest.raises(PayloadError):
        decode(raw)


def test_ping_and_ack_frames() -> None:
    ping = decode(encode(ping_frame(42)))
    assert (ping.service, ping.method, ping.headers) == (42, 0, [("type", "ping")])
    event = Frame(seq_id=7, log_id=8, service=42, method=1, headers=[("message_id", "m1")])
    ack = decode(encode(ack_frame(event, 200, 12)))
    assert ack.headers == [("message_id", "m1"), ("biz_rt", "12")]
    assert (ack.seq_id, ack.log_id, ack.payload) == (7, 8, b'{"code": 200}')


def test_split_payload_is_joined_in_seq_order() -> None:
    parts = _Parts()
    assert parts.add("m", 3, 2, b"c") is None
    assert parts.add("m", 3, 0, b"a") is None
    assert parts.add("m", 3, 1, b"b") == b"abc"
    with pytest.raises(PayloadError):
        parts.add("n", 3, 3, b"x")  # seq out of range


def test_client_config_keeps_defaults_for_bad_values() -> None:
    config = ClientConfig.from_json({"PingInterval": 30, "ReconnectNonce": "x"})
    assert (config.ping_interval_s, config.reconnect_nonce_s) == (30.0, 30.0)
    assert ClientConfig.from_json(None) == ClientConfig()
    assert ClientConfig.from_json({"PingInterval": 0}).ping_interval_s == 120.0
