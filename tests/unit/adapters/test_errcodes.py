"""adapters/errcodes.py: the table, its lookups, and the page that explains every entry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adapters import errcodes
from adapters.wechat import crypto
from bot.errors import DecryptError, SignatureError, StaleRequestError

TROUBLESHOOTING = Path(__file__).resolve().parents[3] / "docs" / "troubleshooting.md"
CJK = re.compile(r"[\u4e00-\u9fff]")
IP_CODE = "Forbidden.AccessDenied.IpNotInWhiteList"


def test_every_entry_says_what_and_how_to_fix_in_both_languages() -> None:
    for entry in errcodes.entries():
        assert CJK.search(entry.zh), entry.code
        assert CJK.search(entry.fix_zh), entry.code
        # English words around the consoles' own menu names; the log line adds the stops.
        assert entry.en[0].isascii(), entry.code
        assert entry.fix_en[0].isascii(), entry.code
        assert not entry.en.endswith("."), entry.code
        assert not entry.fix_en.endswith("."), entry.code


def test_codes_and_anchors_are_unique() -> None:
    keys = [(e.family, e.code.lower()) for e in errcodes.entries()]
    anchors = [e.anchor for e in errcodes.entries()]
    assert len(set(keys)) == len(keys)
    assert len(set(anchors)) == len(anchors)
    assert all(re.fullmatch(r"[a-z0-9_-]+", a) for a in anchors), anchors


@pytest.mark.parametrize(
    ("platform", "code", "expected"),
    [
        ("wecom", 60020, "60020"),
        ("wecom_kf", "60020", "60020"),  # 微信客服 is a WeCom app: same codes
        ("wechat_mp", 40164, "40164"),
        ("feishu", 99991672, "99991672"),
        ("dingtalk", IP_CODE, IP_CODE),
        ("dingtalk", IP_CODE.lower(), IP_CODE),  # as the platform spells it, or not
    ],
)
def test_known_codes_are_found_in_their_platforms_family(
    platform: str, code: int | str, expected: str
) -> None:
    found = errcodes.explain(platform, code)
    assert found is not None
    assert found.code == expected


def test_the_same_number_means_what_its_platform_says() -> None:
    wecom, mp = errcodes.explain("wecom", 40001), errcodes.explain("wechat_mp", 40001)
    assert wecom is not None
    assert mp is not None
    assert "WECOM_SECRET" in wecom.fix_en
    assert "WECHAT_MP_APP_SECRET" in mp.fix_en
    assert errcodes.explain("wechat_mp", 60020) is None  # WeCom's, not the Official Account's


@pytest.mark.parametrize(
    ("platform", "code"), [("wecom", 12345), ("wecom", None), ("wecom", ""), ("web", 60020)]
)
def test_unknown_codes_have_no_explanation(platform: str, code: int | str | None) -> None:
    assert errcodes.explain(platform, code) is None


def test_the_log_line_carries_code_meaning_fix_and_page() -> None:
    entry = errcodes.explain("wecom", 60020)
    assert entry is not None
    line = entry.line()
    assert line.startswith("60020: this server's IP is not among the app's trusted IPs")
    assert "企业可信IP" in line
    assert "fix: add the public egress IP" in line
    assert line.endswith("(docs/troubleshooting.md#wecom-60020)")


def test_every_entry_has_its_section_and_every_section_an_entry() -> None:
    page = TROUBLESHOOTING.read_text(encoding="utf-8")
    sections = set(re.findall(r"^### .* \{#([a-z0-9_-]+)\}$", page, re.MULTILINE))
    assert sections == {e.anchor for e in errcodes.entries()}
    for entry in errcodes.entries():
        assert entry.fix_zh in page, entry.code


KEY = crypto.decode_aes_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
OTHER_KEY = crypto.decode_aes_key("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg")


def _sealed(receiver: str) -> str:
    return crypto.encrypt(b"<xml/>", aes_key=KEY, receiver_id=receiver, random_prefix=b"0" * 16)


def _refused(encrypted: str, *, key: bytes, receiver: str) -> DecryptError:
    with pytest.raises(DecryptError) as info:
        crypto.decrypt(encrypted, aes_key=key, receiver_id=receiver)
    return info.value


def test_refused_callbacks_map_to_the_codes_the_consoles_show() -> None:
    wrong_corp = _refused(_sealed("ww-other"), key=KEY, receiver="ww-mine")
    wrong_key = _refused(_sealed("ww-mine"), key=OTHER_KEY, receiver="ww-mine")
    cases = [
        (SignatureError("signature mismatch"), "-40001"),
        (wrong_corp, "-40005"),
        (wrong_key, "-40007"),
    ]
    for exc, code in cases:
        found = errcodes.refused_callback("wecom", exc)
        assert found is not None, exc
        assert found.code == code, exc
    assert errcodes.refused_callback("wechat_mp", cases[0][0]) is not None
    # Not a console's code: other platforms' schemes, and a merely stale request.
    assert errcodes.refused_callback("feishu", cases[0][0]) is None
    assert errcodes.refused_callback("wecom", StaleRequestError("old")) is None
