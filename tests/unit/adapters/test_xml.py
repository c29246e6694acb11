"""Flat WeChat XML: parse what the platforms send, refuse hostile or malformed bodies."""

from __future__ import annotations

import time

import pytest

from adapters.xml import (
    _DTD_MARKERS,
    MAX_BODY_BYTES,
    _may_hide_markup,
    build_xml,
    outside_cdata,
    parse_xml,
)
from bot.errors import PayloadError

WECOM_OUTER = (
    b"<xml> <ToUserName><![CDATA[ww-corp]]></ToUserName>"
    b"<Encrypt><![CDATA[abc+/=]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>"
)

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<xml><Content>&lol3;</Content></xml>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><Content>&xxe;</Content></xml>"""

# A DTD hidden from a naive CDATA-stripping check by a comment; defusedxml still refuses it.
COMMENT_TRICK = (
    b"""<!-- <![CDATA[ --><!DOCTYPE xml [<!ENTITY e "x">]><xml><A>&e;</A></xml><!-- ]]> -->"""
)


def test_parses_wecom_envelope() -> None:
    assert parse_xml(WECOM_OUTER) == {
        "ToUserName": "ww-corp",
        "Encrypt": "abc+/=",
        "AgentID": "218",
    }


def test_keeps_text_whitespace_and_bare_numbers() -> None:
    body = (
        b"<xml><Content><![CDATA[ two\nlines ]]></Content><CreateTime>1409659813</CreateTime></xml>"
    )
    assert parse_xml(body) == {"Content": " two\nlines ", "CreateTime": "1409659813"}


def test_empty_and_nested_elements_read_as_text() -> None:
    body = b"<xml><Empty></Empty><Video><MediaId>m</MediaId></Video></xml>"
    assert parse_xml(body) == {"Empty": "", "Video": ""}


def test_user_text_quoting_a_doctype_is_fine() -> None:
    body = b"<xml><Content><![CDATA[see <!DOCTYPE html> and <!ENTITY x>]]></Content></xml>"
    assert parse_xml(body) == {"Content": "see <!DOCTYPE html> and <!ENTITY x>"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(BILLION_LAUGHS, id="billion-laughs"),
        pytest.param(EXTERNAL_ENTITY, id="external-entity"),
        pytest.param(COMMENT_TRICK, id="dtd-behind-comment"),
        pytest.param(b"<!DOCTYPE xml><xml><A>1</A></xml>", id="bare-doctype"),
        pytest.param(b'<!doctype xml SYSTEM "http://127.0.0.1/x"><xml/>', id="lowercase"),
        # The DTD sits between a CDATA opener in a comment and a "]]>" in another comment: the
        # pre-check reads it as CDATA, the parser's own forbid_dtd still refuses it.
        pytest.param(
            b'<!-- <![CDATA[ --><!DOCTYPE x [<!ENTITY a "aaaa">]><!-- ]]> --><xml><A>&a;</A></xml>',
            id="dtd-between-cdata-markers-in-comments",
        ),
    ],
)
def test_hostile_xml_is_refused(body: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_xml(body)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not xml", id="text"),
        pytest.param(b"<xml><A>1</A>", id="unclosed"),
        pytest.param(b"<xml><A>1</B></xml>", id="mismatched"),
        pytest.param(b"<root><A>1</A></root>", id="wrong-root"),
        pytest.param(b"<xml><A>1</A><A>2</A></xml>", id="repeated-field"),
        pytest.param(b'{"encrypt": "x"}', id="json"),
    ],
)
def test_malformed_xml_is_refused(body: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_xml(body)


def test_oversized_body_is_refused() -> None:
    body = b"<xml><A>" + b"a" * MAX_BODY_BYTES + b"</A></xml>"
    with pytest.raises(PayloadError, match="too large"):
        parse_xml(body)


@pytest.mark.parametrize(
    ("body", "outside"),
    [
        (b"a<![CDATA[<!DOCTYPE]]>b", b"ab"),
        (b"<![CDATA[x]]><![CDATA[y]]>", b""),
        (b"a<![CDATA[never closed <!DOCTYPE", b"a"),
        (b"<!<![CDATA[x]]>DOCTYPE", b"<!DOCTYPE"),  # joined, so the check sees it
        (b"no cdata", b"no cdata"),
        (b"]]> stray close", b"]]> stray close"),
    ],
)
def test_outside_cdata(body: bytes, outside: bytes) -> None:
    assert outside_cdata(body) == outside


@pytest.mark.parametrize(
    "body",
    [
        WECOM_OUTER,
        b"<xml><A><![CDATA[<!DOCTYPE html>]]></A></xml>",
        b"<<![CDATA[x]]>!DOCTYPE x><xml/>",  # joins into "<!DOCTYPE" outside CDATA
        b"<xml><A><![CDATA[a]]>!<![CDATA[b]]></A></xml>",
        b"<!-- x --><xml/>",
        b"<! DOCTYPE x><xml/>",
        b"<xml><A><![CDATA[unterminated <!ENTITY",
        b"<xml><A><![CDATA[<![CDATA[nested]]></A></xml>",
    ],
)
def test_the_cheap_pre_check_skips_only_bodies_without_markup(body: bytes) -> None:
    # Skipping the CDATA scan must never skip a marker the scan would find.
    assert _may_hide_markup(body) or not _DTD_MARKERS.search(outside_cdata(body))


def test_a_doctype_joined_across_a_cdata_section_is_refused_as_a_dtd() -> None:
    with pytest.raises(PayloadError, match="DTD"):
        parse_xml(b"<<![CDATA[x]]>!DOCTYPE x><xml/>")


def test_a_body_of_unterminated_cdata_openers_is_cheap() -> None:
    # The attack on the old lazy regex: every opener scanned to the end of the body
    # (184 KB stalled the web process for 20 s). The scan is linear: far under a second.
    body = b"<xml><A>" + b"<![CDATA[" * ((MAX_BODY_BYTES - 20) // 9) + b"</A></xml>"
    started = time.perf_counter()
    with pytest.raises(PayloadError, match="malformed"):
        parse_xml(body)
    assert time.perf_counter() - started < 0.5


def test_build_writes_cdata_and_bare_ints() -> None:
    body = build_xml({"ToUserName": "u1", "CreateTime": 1409659813, "Content": "你好 & <b>"})
    expected = (
        "<xml>\n<ToUserName><![CDATA[u1]]></ToUserName>\n<CreateTime>1409659813</CreateTime>\n"
        "<Content><![CDATA[你好 & <b>]]></Content>\n</xml>"
    )
    assert body == expected.encode()


@pytest.mark.parametrize(
    "text", ["]]>", "a]]>b", "]]]]>", "]]>]]>", "]", "]]", "<![CDATA[x]]>", "", " \n "]
)
def test_build_then_parse_round_trips(text: str) -> None:
    assert parse_xml(build_xml({"Content": text, "N": 7})) == {"Content": text, "N": "7"}


@pytest.mark.parametrize("tag", ["", "1a", "a b", "a<b", "x:y"])
def test_build_refuses_bad_tags(tag: str) -> None:
    with pytest.raises(ValueError, match="tag"):
        build_xml({tag: "v"})


def test_build_refuses_characters_xml_cannot_carry() -> None:
    with pytest.raises(ValueError, match="character"):
        build_xml({"Content": "bell\x07"})


def test_build_refuses_other_types() -> None:
    with pytest.raises(TypeError):
        build_xml({"Flag": True})
    with pytest.raises(TypeError):
        build_xml({"Ratio": 1.5})  # type: ignore[dict-item]
