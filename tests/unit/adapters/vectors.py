"""Known answers from shared/protocols/vectors.json, normalised for the WXBizMsgCrypt tests.

The file lives in the sibling checkout ``<repo>/../shared`` (CI clones it beside main); values
are read at test time, never copied here. Entries name the same thing differently
(``encoding_aes_key`` / ``aeskey``, ``timestamp`` / ``timeStamp``…), so each becomes a `Case`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
VECTORS_PATH = REPO_ROOT.parent / "shared" / "protocols" / "vectors.json"
# Platforms whose entries use the §0 scheme; DingTalk's robot HMAC and Feishu do not.
WECHAT_FAMILY = frozenset({"wechat_mp", "wecom", "wecom_kf", "dingtalk"})
_RECEIVE_ID_NAMES = ("receive_id", "app_id", "corpid", "key", "receive_id(appKey|corpId|suiteKey)")


@dataclass(frozen=True)
class Case:
    """One known answer of the §0 scheme; empty fields are absent from the vector."""

    id: str
    token: str
    key: str
    receive_id: str | None
    timestamp: str
    nonce: str
    encrypted: str
    signature: str
    plain: str | None
    random: str
    reply_xml: str

    @property
    def timestamp_ms(self) -> bool:
        # DingTalk sends 13-digit millisecond timestamps (README §4.2).
        return len(self.timestamp) == 13

    @property
    def signed(self) -> bool:
        return all((self.token, self.timestamp, self.nonce, self.encrypted, self.signature))

    @property
    def decryptable(self) -> bool:
        return bool(self.key and self.encrypted) and None not in (self.plain, self.receive_id)

    @property
    def reproducible(self) -> bool:
        return self.decryptable and len(self.random) == 16


@dataclass(frozen=True)
class PlainSignatureCase:
    id: str
    token: str
    timestamp: str
    nonce: str
    signature: str


@cache
def load_vectors() -> tuple[dict[str, Any], ...]:
    if not VECTORS_PATH.is_file():
        pytest.fail(
            f"known-answer vectors not found at {VECTORS_PATH}: check out the shared/ "
            "repository beside this one (CI clones it there)",
            pytrace=False,
        )
    return tuple(json.loads(VECTORS_PATH.read_text(encoding="utf-8")))


def is_wechat_family(entry: dict[str, Any]) -> bool:
    return entry["platform"] in WECHAT_FAMILY and "HMAC" not in entry["scheme"]


def is_raw_aes_quirk(entry: dict[str, Any]) -> bool:
    # The DingTalk Rust sample's raw AES with a 16-byte pad: no random/length framing.
    return "plaintext_fullstr" in entry["inputs"]


def _first(mapping: dict[str, Any], *names: str) -> Any:
    return next((mapping[name] for name in names if name in mapping), None)


def _case(case_id: str, inputs: dict[str, Any], expected: dict[str, Any]) -> Case:
    return Case(
        id=case_id,
        token=inputs.get("token", ""),
        key=_first(inputs, "encoding_aes_key", "aeskey") or "",
        receive_id=_first(inputs, *_RECEIVE_ID_NAMES) or expected.get("receive_id"),
        timestamp=_first(inputs, "timestamp", "timeStamp") or "",
        nonce=inputs.get("nonce", ""),
        encrypted=_first(inputs, "encrypt", "echostr") or expected.get("encrypt", ""),
        signature=inputs.get("msg_signature") or expected.get("msg_signature", ""),
        plain=_first(expected, "msg", "echostr_plain") or _first(inputs, "msg", "plaintext"),
        random=inputs.get("random") or expected.get("random", ""),
        reply_xml=expected.get("xml", ""),
    )


def _entry_cases(index: int, entry: dict[str, Any]) -> list[Case]:
    inputs, expected = entry["inputs"], dict(entry["expected"])
    expected.update(expected.pop("response_json", {}))
    case_id = f"{index}-{entry['platform']}"
    # One entry may hold both requests of a sample: the GET check and a POST.
    parts = {
        name: inputs[name] for name in ("verify", "post") if isinstance(inputs.get(name), dict)
    }
    if not parts:
        return [_case(case_id, inputs, expected)]
    shared = {k: v for k, v in inputs.items() if k not in parts}
    plain_of = {"verify": "echostr_plain", "post": "msg"}
    return [
        _case(f"{case_id}-{name}", {**shared, **fields}, {"msg": expected[plain_of[name]]})
        for name, fields in parts.items()
    ]


def wechat_cases() -> list[Case]:
    """Every §0 case in the file; an entry that yields nothing checkable is an error."""
    cases: list[Case] = []
    for index, entry in enumerate(load_vectors()):
        if not is_wechat_family(entry) or is_raw_aes_quirk(entry):
            continue
        if set(entry["inputs"]) == {"token", "timestamp", "nonce"}:
            continue  # a plain 3-field signature: see plain_signature_cases
        found = _entry_cases(index, entry)
        if not any(c.signed or c.decryptable for c in found):
            raise AssertionError(f"vectors.json entry {index} has a shape these tests miss")
        cases.extend(found)
    return cases


def plain_signature_cases() -> list[PlainSignatureCase]:
    """MP's 3-field signatures: standalone entries and the ``signature_3field`` extras."""
    cases = []
    for index, entry in enumerate(load_vectors()):
        if not is_wechat_family(entry):
            continue
        inputs, expected = entry["inputs"], entry["expected"]
        value = expected.get("signature_3field") or (
            expected.get("signature") if set(inputs) == {"token", "timestamp", "nonce"} else None
        )
        if value:
            cases.append(
                PlainSignatureCase(
                    f"{index}-{entry['platform']}",
                    inputs["token"],
                    inputs["timestamp"],
                    inputs["nonce"],
                    value,
                )
            )
    return cases


def raw_aes_quirks() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{index}-{entry['platform']}", entry)
        for index, entry in enumerate(load_vectors())
        if is_wechat_family(entry) and is_raw_aes_quirk(entry)
    ]


def vector(platform: str, scheme_contains: str) -> dict[str, Any]:
    """The single entry of platform whose scheme mentions scheme_contains."""
    found = [
        entry
        for entry in load_vectors()
        if entry["platform"] == platform and scheme_contains in entry["scheme"]
    ]
    if len(found) != 1:
        raise AssertionError(
            f"expected one {platform} vector '{scheme_contains}', got {len(found)}"
        )
    return found[0]


def feishu_vectors() -> list[tuple[str, dict[str, Any]]]:
    """Every Feishu entry (decrypt, signature, encrypt), as (id, entry)."""
    return [
        (f"{index}-{entry['platform']}", entry)
        for index, entry in enumerate(load_vectors())
        if entry["platform"] == "feishu"
    ]
