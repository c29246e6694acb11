"""A media download's file name, as its Content-Disposition bytes come over the wire
(adapters/media.py, adapters/disposition.py).

A loopback server writes the answer's bytes by hand, so the header is exactly what a
platform sends, not what aiohttp's server would make of a str: raw UTF-8 (WeCom), raw GBK,
percent-encoded, RFC 5987, a path. The client's own decoding of header bytes is part of
what is tested.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from adapters import media
from bot.domain import Platform

BODY = b"%PDF-1.4 not really"
HETONG = "合同.pdf"


@pytest.fixture
async def raw_server() -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    """A server answering GET /<key> with BODY and the Content-Disposition bytes set for key."""
    headers: dict[str, bytes] = {}

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = request.split(b" ", 2)[1].lstrip(b"/").decode()
        named = headers.get(key, b"")
        line = b"Content-Disposition: " + named + b"\r\n" if named else b""
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            + line
            + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(BODY)
            + BODY
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", headers


@pytest.mark.parametrize(
    ("disposition", "name"),
    [
        (b'attachment; filename="' + HETONG.encode() + b'"', HETONG),  # WeCom: raw UTF-8
        (b'attachment; filename="' + HETONG.encode("gbk") + b'"', HETONG),
        (b'attachment; filename="%E5%90%88%E5%90%8C.pdf"', HETONG),
        (b"attachment; filename*=UTF-8''%E5%90%88%E5%90%8C.pdf", HETONG),
        (b'attachment; filename="../../etc/passwd"', "passwd"),
        (b'attachment; filename="never closed', ""),
        (b"", ""),  # no Content-Disposition at all
    ],
)
async def test_the_downloaded_file_is_named_as_its_header_says(
    raw_server: tuple[str, dict[str, bytes]], tmp_path: Path, disposition: bytes, name: str
) -> None:
    url, headers = raw_server
    headers["f"] = disposition
    async with aiohttp.ClientSession() as http:
        fetched = await media.fetch_from_api(
            http, f"{url}/f", tmp_path / "x.bin", platform=Platform.WECOM,
            max_bytes=1 << 20, timeout_s=5,
        )  # fmt: skip
    assert fetched.error is None
    assert (tmp_path / "x.bin").read_bytes() == BODY
    assert fetched.name == name
