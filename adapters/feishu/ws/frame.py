"""The Feishu long connection's frame: protobuf ``pbbp2.Frame``, encoded by hand.

Schema (lark-oapi ``lark_oapi/ws/pb/pbbp2.proto``, proto2)::

    message Header { required string key = 1; required string value = 2; }
    message Frame {
      required uint64 SeqID = 1;  required uint64 LogID = 2;
      required int32 service = 3; required int32 method = 4;   // 0 control, 1 data
      repeated Header headers = 5;
      optional string payload_encoding = 6; optional string payload_type = 7;
      optional bytes payload = 8;           optional string LogIDNew = 9;
    }

Two messages of varints and length-delimited fields do not need generated code or a
``protobuf`` dependency; unknown fields are skipped, as protobuf parsers do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.domain import Platform
from bot.errors import PayloadError

PLATFORM = Platform.FEISHU
METHOD_CONTROL = 0
METHOD_DATA = 1
# A frame far larger than any event (Feishu splits payloads into parts) is refused.
MAX_FRAME_BYTES = 4 << 20

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_U64 = (1 << 64) - 1


@dataclass(slots=True)
class Frame:
    """One frame; ``headers`` keep their order (type, message_id, sum, seq, trace_id…)."""

    seq_id: int = 0
    log_id: int = 0
    service: int = 0
    method: int = METHOD_CONTROL
    headers: list[tuple[str, str]] = field(default_factory=list)
    payload_encoding: str = ""
    payload_type: str = ""
    payload: bytes = b""
    log_id_new: str = ""

    def header(self, key: str, default: str = "") -> str:
        """The first header named `key`, else `default`."""
        return next((v for k, v in self.headers if k == key), default)


# --- encoding --------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    value &= _U64  # negative int32/int64 are sent as 10-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _bytes_field(number: int, data: bytes) -> bytes:
    return _key(number, _LEN) + _varint(len(data)) + data


def encode(frame: Frame) -> bytes:
    """Serialise `frame` (the required fields always, optional ones when non-empty)."""
    out = bytearray()
    for number, value in ((1, frame.seq_id), (2, frame.log_id)):
        out += _key(number, _VARINT) + _varint(value)
    for number, value in ((3, frame.service), (4, frame.method)):
        out += _key(number, _VARINT) + _varint(value)
    for k, v in frame.headers:
        header = _bytes_field(1, k.encode("utf-8")) + _bytes_field(2, v.encode("utf-8"))
        out += _bytes_field(5, header)
    for number, text in ((6, frame.payload_encoding), (7, frame.payload_type)):
        if text:
            out += _bytes_field(number, text.encode("utf-8"))
    if frame.payload:
        out += _bytes_field(8, frame.payload)
    if frame.log_id_new:
        out += _bytes_field(9, frame.log_id_new.encode("utf-8"))
    return bytes(out)


# --- decoding --------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def done(self) -> bool:
        return self.at >= len(self.data)

    def varint(self) -> int:
        result = shift = 0
        while True:
            if self.at >= len(self.data) or shift > 63:
                raise PayloadError("truncated or overlong varint in frame", PLATFORM)
            byte = self.data[self.at]
            self.at += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result & _U64
            shift += 7

    def take(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise PayloadError("truncated field in frame", PLATFORM)
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def fields(self) -> list[tuple[int, int | bytes]]:
        """Every (field number, value) in order; unknown wire types are an error."""
        out: list[tuple[int, int | bytes]] = []
        while not self.done():
            key = self.varint()
            number, wire = key >> 3, key & 7
            if number == 0:
                raise PayloadError("field number 0 in frame", PLATFORM)
            if wire == _VARINT:
                out.append((number, self.varint()))
            elif wire == _LEN:
                out.append((number, self.take(self.varint())))
            elif wire == _I64:
                self.take(8)
            elif wire == _I32:
                self.take(4)
            else:
                raise PayloadError(f"unsupported wire type {wire} in frame", PLATFORM)
        return out


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _text(value: int | bytes, what: str) -> str:
    if not isinstance(value, bytes):
        raise PayloadError(f"frame {what} is not a string", PLATFORM)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"frame {what} is not UTF-8", PLATFORM) from exc


def _header(data: bytes) -> tuple[str, str]:
    key = value = None
    for number, raw in _Reader(data).fields():
        if number == 1:
            key = _text(raw, "header key")
        elif number == 2:
            value = _text(raw, "header value")
    if key is None or value is None:
        raise PayloadError("frame header without key or value", PLATFORM)
    return key, value


def decode(data: bytes) -> Frame:
    """Parse one frame; PayloadError for anything malformed or missing a required field."""
    if len(data) > MAX_FRAME_BYTES:
        raise PayloadError(f"frame of {len(data)} bytes is too large", PLATFORM)
    frame = Frame()
    seen: set[int] = set()
    for number, value in _Reader(data).fields():
        seen.add(number)
        if number in (1, 2, 3, 4):
            if not isinstance(value, int):
                raise PayloadError(f"frame field {number} is not a varint", PLATFORM)
            if number == 1:
                frame.seq_id = value
            elif number == 2:
                frame.log_id = value
            elif number == 3:
                frame.service = _int32(value)
            else:
                frame.method = _int32(value)
        elif number == 5:
            if not isinstance(value, bytes):
                raise PayloadError("frame header is not a message", PLATFORM)
            frame.headers.append(_header(value))
        elif number == 6:
            frame.payload_encoding = _text(value, "payload_encoding")
        elif number == 7:
            frame.payload_type = _text(value, "payload_type")
        elif number == 8:
            if not isinstance(value, bytes):
                raise PayloadError("frame payload is not bytes", PLATFORM)
            frame.payload = value
        elif number == 9:
            frame.log_id_new = _text(value, "LogIDNew")
    missing = {1, 2, 3, 4} - seen
    if missing:
        raise PayloadError(f"frame lacks required field(s) {sorted(missing)}", PLATFORM)
    return frame
