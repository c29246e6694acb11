"""The file name of a download's Content-Disposition header (adapters/disposition.py): the forms
platforms send, and hostile or malformed values, with known answers."""

from __future__ import annotations

import time

import pytest

from adapters.disposition import MAX_HEADER_CHARS, MAX_NAME_CHARS, filename

HETONG = "%E5%90%88%E5%90%8C"  # 合同 in UTF-8, percent-encoded
RAW_UTF8_AS_LATIN1 = "合同.pdf".encode().decode("latin-1")
GBK_AS_AIOHTTP_READS_IT = "合同.pdf".encode("gbk").decode("utf-8", "surrogateescape")


@pytest.mark.parametrize(
    ("value", "name"),
    [
        # WeCom / 微信客服 media/get: raw UTF-8 in quotes (aiohttp reads it as UTF-8) ...
        ('attachment; filename="合同.pdf"', "合同.pdf"),
        # ... or percent-encoded in quotes.
        (f'attachment; filename="{HETONG}.pdf"', "合同.pdf"),
        # RFC 5987 / 6266, UTF-8 and ISO-8859-1; filename* wins over filename.
        (f"attachment; filename*=UTF-8''{HETONG}.pdf", "合同.pdf"),
        (f"attachment; filename=\"fallback.pdf\"; filename*=utf-8'zh-CN'{HETONG}.pdf", "合同.pdf"),
        (f"attachment; filename*=UTF-8''{HETONG}.pdf; filename=\"fallback.pdf\"", "合同.pdf"),
        ("attachment; filename*=iso-8859-1'en'caf%E9.pdf", "café.pdf"),
        # Quoted, though an ext-value should not be.
        (f"attachment; filename*=\"UTF-8''{HETONG}.pdf\"", "合同.pdf"),
        # Unquoted, spaced, upper-case, inline.
        ("attachment; filename=report.pdf", "report.pdf"),
        ("attachment;filename=report.pdf;size=12", "report.pdf"),
        ('ATTACHMENT ; FILENAME = "Report 2024.xlsx" ', "Report 2024.xlsx"),
        ('inline; filename="a.txt"', "a.txt"),
        # Bytes decoded the wrong way, decoded again; a real latin-1 name stays.
        (f'attachment; filename="{RAW_UTF8_AS_LATIN1}"', "合同.pdf"),
        (f'attachment; filename="{GBK_AS_AIOHTTP_READS_IT}"', "合同.pdf"),
        ('attachment; filename="café.pdf"', "café.pdf"),
        # Quoted pairs; a Windows path's backslashes are not escapes.
        (r'attachment; filename="say \"hi\".txt"', 'say "hi".txt'),
        ('attachment; filename="a;b.pdf"', "a;b.pdf"),
        (r'attachment; filename="C:\Users\me\合同.pdf"', "合同.pdf"),
        # A % that is not an escape stays; an escape that is not UTF-8 stays as written.
        ('attachment; filename="100%.pdf"', "100%.pdf"),
        ('attachment; filename="a%20b.pdf"', "a b.pdf"),
        ('attachment; filename="x%E9.pdf"', "x%E9.pdf"),
    ],
)
def test_the_name_platforms_send_is_read(value: str, name: str) -> None:
    assert filename(value) == name


@pytest.mark.parametrize(
    ("value", "name"),
    [
        # Paths, plain or percent-encoded, leave only the last part.
        ('attachment; filename="../../etc/passwd"', "passwd"),
        ("attachment; filename=../../etc/passwd", "passwd"),
        ('attachment; filename="%2E%2E%2F%2E%2E%2Fetc%2Fpasswd"', "passwd"),
        (r'attachment; filename="..\..\windows\win.ini"', "win.ini"),
        ("attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd", "passwd"),
        ('attachment; filename="/"', ""),
        ('attachment; filename=".."', ""),
        ('attachment; filename="docs/.."', ""),
        # Control characters (a header split, a NUL) and a bidi override go; spaces collapse.
        ("attachment; filename*=UTF-8''a%0D%0ASet-Cookie%3A%20x.pdf", "aSet-Cookie: x.pdf"),
        ("attachment; filename*=UTF-8''evil%00.pdf", "evil.pdf"),
        ("attachment; filename*=UTF-8''invoice%E2%80%AEfdp.exe", "invoicefdp.exe"),
        ('attachment; filename="  a    b.pdf  "', "a b.pdf"),
    ],
)
def test_a_hostile_name_is_made_a_bare_file_name(value: str, name: str) -> None:
    assert filename(value) == name


@pytest.mark.parametrize(
    "value",
    [
        "",
        "attachment",
        'attachment; filename="never closed.pdf',
        'attachment; filename="a.pdf" junk',
        'attachment; filename="a.pdf"; filename="b.exe"',  # two names: which one is meant?
        'attach"ment; filename="a.pdf"',
        "attachment; size=3",
        "attachment; filename=",
        "attachment; filename",
        "attachment; filename*=UTF-8''%E5%90.pdf",  # cut UTF-8, and no filename to fall back to
        "attachment; filename*=UTF-8''%ZZ.pdf",
        "attachment; filename*=UTF-8''%E.pdf",
        "attachment; filename*=koi8-r''%C1.pdf",  # a charset RFC 5987 does not require
        "attachment; filename*=UTF-8'%E5%90%88.pdf",  # one quote, not two
        "attachment; filename*=UTF-8''合同.pdf",  # not ASCII: not an ext-value
        'attachment; filename="\udcff\udcfe.pdf"',  # bytes neither UTF-8 nor GB18030
        'attachment; filename="\x00\x01\x7f"',
        "attachment; filename=" + "a" * MAX_HEADER_CHARS,
    ],
)
def test_a_malformed_value_gives_no_name(value: str) -> None:
    assert filename(value) == ""


def test_a_malformed_extended_name_falls_back_to_the_plain_one() -> None:
    assert filename("attachment; filename*=UTF-8''%ZZ; filename=\"ok.pdf\"") == "ok.pdf"


def test_a_long_name_is_cut_and_keeps_its_extension() -> None:
    got = filename(f'attachment; filename="{"长" * 300}.pdf"')
    assert got == "长" * (MAX_NAME_CHARS - 4) + ".pdf"
    got = filename(f'attachment; filename="{"a" * 300}"')
    assert got == "a" * MAX_NAME_CHARS


@pytest.mark.parametrize(
    "value",
    [
        "attachment; " + "a=" * 2000,
        "attachment; " + ";" * 4000,
        'attachment; filename="' + "\\" * 4000,
        "attachment; filename*=UTF-8''" + "%" * 4000,
        "attachment; filename*=" + "'" * 4000,
        'attachment; filename="' + "%E5" * 1300 + '"',
    ],
)
def test_hostile_values_are_read_in_linear_time(value: str) -> None:
    started = time.perf_counter()
    for _ in range(20):
        filename(value)
    # One pass over at most 4096 characters: well under a millisecond each, even on a
    # loaded machine; a backtracking parser would take seconds here.
    assert time.perf_counter() - started < 1.0
