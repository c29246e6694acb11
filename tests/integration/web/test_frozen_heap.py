"""A served web process moves what start-up loaded out of the collector's way."""

from __future__ import annotations

import gc

from aiohttp.test_utils import TestClient, TestServer

from bot.web.app import create_app


async def test_a_served_app_freezes_its_start_up_heap_and_a_test_app_does_not(
    make_settings,
) -> None:
    settings = make_settings()
    assert gc.get_freeze_count() == 0
    plain = TestClient(TestServer(create_app(settings)))
    await plain.start_server()
    try:
        assert gc.get_freeze_count() == 0
    finally:
        await plain.close()
    served = TestClient(TestServer(create_app(settings, freeze_heap=True)))
    await served.start_server()
    try:
        assert gc.get_freeze_count() > 10_000  # the whole start-up heap, not a handful
        assert (await served.get("/healthz")).status == 200
    finally:
        await served.close()
        gc.unfreeze()  # this test process goes on to run other tests
