"""The dashboard's model section over HTTP: the estimated cost of each backend's tokens at
its configured price (nothing shown without one), and each backend's breaker as a worker
publishes it to Redis: unknown before any worker, open after the fake vLLM failed three
times, a stopped worker's entry ignored."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import datetime

from sqlmodel import Session

from bot import keys
from bot.db import records, usage
from bot.db.engine import get_engine
from bot.domain import InboundMessage, Platform
from tests.integration.console.conftest import Console


def _row(html: str, table: str, backend: str) -> list[str]:
    body = re.search(rf'<table class="list" id="{table}">(.*?)</table>', html, re.S)
    assert body, f"no table {table}"
    row = re.search(rf"<tr[^>]*><td>{backend}</td>(.*?)</tr>", body.group(1))
    assert row, f"no row {backend} in {table}"
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))


def _spend(engine, backend: str, message_id: int, prompt: int, completion: int) -> None:
    msg = InboundMessage(Platform.WEB, "default", f"e{message_id}", "web-cost", "web-cost", "hi")
    with Session(engine) as s:
        conv = records.ensure_conversation(s, msg)
        usage.record(
            s,
            conversation_id=conv.id or 0,
            message_id=message_id,
            purpose="answer",
            backend=backend,
            prompt_tokens=prompt,
            completion_tokens=completion,
        )


async def _page(c: Console) -> str:
    resp = await c.client.get("/console/dashboard", params={"days": "1"})
    assert resp.status == 200
    return await resp.text()


async def test_cost_and_breaker_per_backend(
    make_settings, make_client, fakes, wecom_app, open_runtime, aredis
) -> None:
    sections = fakes.sections(wecom_app)
    sections["vllm"].update(price_per_1k_tokens=0.002, price_per_1k_output_tokens=0.006)
    settings = make_settings(**sections)
    c = Console(
        await make_client(settings), settings, get_engine(settings.core.effective_database_url())
    )
    c.add("boss", "admin")
    await c.sign_in("boss")
    _spend(c.engine, "vllm", 1, 1000, 500)
    _spend(c.engine, "dashscope", 2, 200, 100)

    html = await _page(c)
    assert _row(html, "model-table", "vllm") == ["1", "1000", "500", "0.0050"]
    assert _row(html, "model-table", "dashscope")[-1] == "—"  # no DashScope price set
    assert "估算费用" in html
    # No worker has run yet: the breakers are unknown, not "closed".
    assert "未知" in _row(html, "breakers", "vllm")[0]

    # A stopped worker's old entry says open; it is past the TTL and does not count.
    stale = {"state": "open", "changed_at": 1.0, "at": time.time() - 2 * keys.BREAKER_BOARD_TTL_S}
    await aredis.hset(keys.breaker_board("vllm"), "gone:1", json.dumps(stale))

    rt = await open_runtime(settings)  # a worker's runtime publishes its breakers
    assert rt.router is not None
    fakes.vllm.fail_next(3, status=503)
    started = time.time()
    for _ in range(3):  # each call falls back to DashScope; the third failure opens vLLM's
        await rt.router.complete([{"role": "user", "content": "你好"}], timeout_s=5)

    for _ in range(60):
        html = await _page(c)
        if "已熔断" in _row(html, "breakers", "vllm")[0]:
            break
        await asyncio.sleep(0.1)
    vllm = _row(html, "breakers", "vllm")
    assert "已熔断" in vllm[0], vllm
    assert vllm[2] == "1 / 1"  # this worker only: the stale one is ignored
    since = datetime.strptime(vllm[1], "%Y-%m-%d %H:%M").astimezone()  # local, to the minute
    assert abs(since.timestamp() - started) < 120
    dashscope = _row(html, "breakers", "dashscope")
    assert "正常" in dashscope[0]
    assert dashscope[2] == "0 / 1"


async def test_without_prices_no_cost_column(console) -> None:
    c = await console()
    c.add("boss", "admin")
    await c.sign_in("boss")
    _spend(c.engine, "vllm", 1, 1000, 500)
    html = await _page(c)
    assert _row(html, "model-table", "vllm") == ["1", "1000", "500"]
    assert "估算费用" not in html
