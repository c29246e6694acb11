"""A media API's JSON error body is read whole, and never past 64 KiB (adapters/media.py).

A fake media API on loopback answers the way a slow or broken one does: the error JSON in
pieces with pauses between them (chunked), a body that never ends, and an oversized body
with its Content-Length.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from adapters import media
from bot.domain import Platform
from bot.errors import PlatformUnavailableError
from tests.fakes.base import serve

ERROR = b'{"errcode": 42001, "errmsg": "access_token expired, hint: [1700000000]"}'
PIECE = 8 * 1024


async def _pieces(request: web.Request) -> web.StreamResponse:
    # The JSON in three pieces, each sent (and flushed) after a pause: chunked, no length.
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await resp.prepare(request)
    for start in range(0, len(ERROR), 25):
        await resp.write(ERROR[start : start + 25])
        await asyncio.sleep(0.15)
    await resp.write_eof()
    return resp


async def _endless(request: web.Request) -> web.StreamResponse:
    # JSON whitespace for ever: only a bound on what is read ends it before the timeout.
    sent = request.app[SENT]
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    try:
        while True:
            await resp.write(b" " * PIECE)
            sent.append(PIECE)
            await asyncio.sleep(0.005)
    except (ConnectionResetError, asyncio.CancelledError):
        return resp


async def _oversized(_: web.Request) -> web.Response:
    return web.Response(body=b" " * (200 * 1024) + ERROR, content_type="application/json")


SENT = web.AppKey("sent", list[int])


@pytest.fixture
def api() -> Iterator[tuple[str, list[int]]]:
    app = web.Application()
    sent: list[int] = []
    app[SENT] = sent
    app.router.add_get("/pieces", _pieces)
    app.router.add_get("/endless", _endless)
    app.router.add_get("/oversized", _oversized)
    with serve(app) as url:
        yield url, sent


async def _fetch(url: str, dest: Path, timeout_s: float = 5) -> media.Fetched:
    async with aiohttp.ClientSession() as http:
        return await media.fetch_from_api(
            http, url, dest, platform=Platform.WECOM, max_bytes=1 << 20, timeout_s=timeout_s
        )


async def test_an_error_body_sent_in_pieces_is_read_whole(
    api: tuple[str, list[int]], tmp_path: Path
) -> None:
    url, _ = api
    fetched = await _fetch(f"{url}/pieces", tmp_path / "x.jpg")
    # The whole JSON, so the client sees the expired token (and refreshes it) rather than
    # "neither a file nor JSON" from its first 25 bytes.
    assert fetched.error == {"errcode": 42001, "errmsg": "access_token expired, hint: [1700000000]"}
    assert not (tmp_path / "x.jpg").exists()


async def test_an_endless_error_body_is_cut_at_the_bound(
    api: tuple[str, list[int]], tmp_path: Path
) -> None:
    url, sent = api
    started = time.monotonic()
    with pytest.raises(PlatformUnavailableError, match="oversized error body"):
        await _fetch(f"{url}/endless", tmp_path / "x.jpg", timeout_s=10)
    assert time.monotonic() - started < 3  # long before the 10 s timeout
    # Read up to 64 KiB and stopped: the server got no further than what fits in the
    # socket buffers beyond it.
    await asyncio.sleep(0.2)
    assert sum(sent) < 64 * 1024 + 8 * 1024 * 1024


async def test_an_error_body_announced_over_the_bound_is_not_read(
    api: tuple[str, list[int]], tmp_path: Path
) -> None:
    url, _ = api
    with pytest.raises(PlatformUnavailableError, match="oversized error body"):
        await _fetch(f"{url}/oversized", tmp_path / "x.jpg")
