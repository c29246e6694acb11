"""Known-answer vectors of the webhook crypto, loaded from the JSON files beside this module.

Every entry of a file uses the same field names, so each loads straight into one of the frozen
records below; a misspelt or missing field fails the load instead of skipping a check. What the
files hold and where the values come from: ``README.md`` in this folder and
``docs/protocols/index.md``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

HERE = Path(__file__).resolve().parent

Use = Literal["url_check", "inbound", "outbound"]
_USES = frozenset(get_args(Use))


@dataclass(frozen=True, kw_only=True)
class Case:
    """One WXBizMsgCrypt known answer. Empty strings and ``None`` mean "not part of this vector"."""

    id: str
    platform: str  # a bot.domain.Platform value: wechat_mp, wecom or dingtalk
    use: Use  # url_check: a GET echostr; inbound: a callback body; outbound: what we seal
    derived: bool  # True: computed here and cross-checked, no published answer exists
    source: str
    token: str = ""
    encoding_aes_key: str = ""
    receive_id: str | None = None  # "" is a real receive id (WeCom 智能机器人)
    timestamp: str = ""
    nonce: str = ""
    encrypted: str = ""  # base64 ciphertext: Encrypt, encrypt or echostr
    msg_signature: str = ""  # the 4-field SHA-1 over token, timestamp, nonce, encrypted
    plaintext: str | None = None  # the msg inside the frame, exact bytes (keeps its "\n")
    random: str = ""  # the 16-byte prefix, when known
    reply_xml: str = ""  # the encrypted reply envelope, when the vector pins it
    envelope: str = ""  # the outer POST body as the source shows it (ciphertext elided)
    note: str = ""

    @property
    def timestamp_ms(self) -> bool:
        # DingTalk sends 13-digit millisecond timestamps.
        return len(self.timestamp) == 13

    @property
    def signed(self) -> bool:
        return all((self.token, self.timestamp, self.nonce, self.encrypted, self.msg_signature))

    @property
    def decryptable(self) -> bool:
        return bool(self.encoding_aes_key and self.encrypted) and None not in (
            self.plaintext,
            self.receive_id,
        )

    @property
    def reproducible(self) -> bool:
        """Sealing ``plaintext`` with ``random`` as prefix must give ``encrypted`` exactly."""
        return self.decryptable and len(self.random) == 16


@dataclass(frozen=True, kw_only=True)
class PlainSignatureCase:
    """MP's 3-field ``signature``: SHA-1 over the sorted token, timestamp and nonce.

    An ``id`` equal to a `Case` id means it was sent with that request.
    """

    id: str
    platform: str
    derived: bool
    source: str
    token: str
    timestamp: str
    nonce: str
    signature: str


@dataclass(frozen=True, kw_only=True)
class RawAesQuirk:
    """Bare AES-CBC padded to 16, without the random/length framing: valid padding, bad frame."""

    id: str
    platform: str
    derived: bool
    source: str
    encoding_aes_key: str
    plaintext: str
    encrypted: str
    pad_byte: int
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class RobotSignCase:
    """DingTalk robot HTTP mode.

    ``sign`` = base64(HMAC-SHA256(key=app_secret, msg=timestamp + "\\n" + app_secret)).
    """

    id: str
    derived: bool
    source: str
    timestamp: str  # milliseconds
    app_secret: str
    sign: str
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class EventResponseCase:
    """The JSON answer to a DingTalk event; ``case`` (same id) holds the values it seals."""

    id: str
    derived: bool
    source: str
    response: dict[str, str]
    case: Case


@dataclass(frozen=True, kw_only=True)
class FeishuDecryptCase:
    id: str
    derived: bool
    source: str
    encrypt_key: str
    encrypted: str
    plaintext: str
    iv_hex: str  # the first 16 bytes of the decoded blob


@dataclass(frozen=True, kw_only=True)
class FeishuSignatureCase:
    """``signature`` = hex SHA-256 over timestamp + nonce + encrypt_key + body, all UTF-8."""

    id: str
    derived: bool
    source: str
    timestamp: str  # X-Lark-Request-Timestamp
    nonce: str  # X-Lark-Request-Nonce
    encrypt_key: str
    body: str  # the raw request body
    signature: str  # X-Lark-Signature
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class FeishuEncryptCase:
    id: str
    derived: bool
    source: str
    encrypt_key: str
    iv_hex: str
    plaintext: str
    encrypted: str


_Record = TypeVar("_Record")

# file -> the lists it must hold; "about" is a one-line description for people.
_LAYOUT: dict[str, frozenset[str]] = {
    "wechat.json": frozenset({"cases", "plain_signatures", "raw_aes_quirks"}),
    "dingtalk.json": frozenset({"robot_sign", "event_responses"}),
    "feishu.json": frozenset({"decrypt", "signature", "encrypt"}),
}
# Ids that may appear twice in a file: a plain signature shares the id of the Case it came with.
_SHARED_IDS: dict[str, frozenset[str]] = {"wechat.json": frozenset({"mp-python-compat"})}


@cache
def _file(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((HERE / name).read_text(encoding="utf-8"))
    if set(data) - {"about"} != _LAYOUT[name]:
        raise ValueError(f"{name}: expected the lists {sorted(_LAYOUT[name])}, got {sorted(data)}")
    ids = [entry["id"] for key in _LAYOUT[name] for entry in data[key]]
    repeated = {i for i in ids if ids.count(i) > 1} - _SHARED_IDS.get(name, frozenset())
    if repeated:
        raise ValueError(f"{name}: duplicate ids {sorted(repeated)}")
    return data


def _records(
    record: type[_Record],
    name: str,
    key: str,
    linked: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> tuple[_Record, ...]:
    """Each entry of one list as a record; ``linked`` supplies fields not stored in the entry."""
    allowed = {f.name for f in fields(record)}  # type: ignore[arg-type]
    loaded = []
    for entry in _file(name)[key]:
        extra = linked(entry) if linked else {}
        unknown = set(entry) - (allowed - set(extra))
        if unknown:
            raise ValueError(f"{name} {key} {entry.get('id')}: unknown fields {sorted(unknown)}")
        try:
            loaded.append(record(**entry, **extra))
        except TypeError as error:
            raise ValueError(f"{name} {key} {entry.get('id')}: {error}") from error
    return tuple(loaded)


def _by_id(records: list[_Record], case_id: str) -> _Record:
    found = [r for r in records if getattr(r, "id", None) == case_id]
    if len(found) != 1:
        raise KeyError(f"expected one vector {case_id!r}, found {len(found)}")
    return found[0]


@cache
def _wechat_cases() -> tuple[Case, ...]:
    cases = _records(Case, "wechat.json", "cases")
    for case in cases:
        if case.use not in _USES:
            raise ValueError(f"wechat.json {case.id}: use must be one of {sorted(_USES)}")
        if not (case.signed or case.decryptable):
            raise ValueError(f"wechat.json {case.id}: neither signed nor decryptable")
    return cases


def wechat_cases() -> list[Case]:
    """Every WXBizMsgCrypt case: MP, WeCom, WeCom kf and DingTalk events."""
    return list(_wechat_cases())


def wechat_case(case_id: str) -> Case:
    return _by_id(wechat_cases(), case_id)


def plain_signature_cases() -> list[PlainSignatureCase]:
    return list(_records(PlainSignatureCase, "wechat.json", "plain_signatures"))


def plain_signature_case(case_id: str) -> PlainSignatureCase:
    return _by_id(plain_signature_cases(), case_id)


def raw_aes_quirks() -> list[RawAesQuirk]:
    return list(_records(RawAesQuirk, "wechat.json", "raw_aes_quirks"))


def robot_sign_cases() -> list[RobotSignCase]:
    return list(_records(RobotSignCase, "dingtalk.json", "robot_sign"))


@cache
def _event_response_cases() -> tuple[EventResponseCase, ...]:
    loaded = _records(
        EventResponseCase,
        "dingtalk.json",
        "event_responses",
        linked=lambda entry: {"case": wechat_case(entry["id"])},
    )
    for response in loaded:
        case = response.case
        sealed = {
            "msg_signature": case.msg_signature,
            "timeStamp": case.timestamp,
            "nonce": case.nonce,
            "encrypt": case.encrypted,
        }
        if response.response != sealed:
            raise ValueError(f"dingtalk.json {response.id}: response differs from its case")
    return loaded


def event_response_cases() -> list[EventResponseCase]:
    """DingTalk's encrypted answers, each with the wechat.json `Case` of the same id."""
    return list(_event_response_cases())


def feishu_decrypt_cases() -> list[FeishuDecryptCase]:
    return list(_records(FeishuDecryptCase, "feishu.json", "decrypt"))


def feishu_signature_cases() -> list[FeishuSignatureCase]:
    return list(_records(FeishuSignatureCase, "feishu.json", "signature"))


def feishu_encrypt_cases() -> list[FeishuEncryptCase]:
    return list(_records(FeishuEncryptCase, "feishu.json", "encrypt"))
