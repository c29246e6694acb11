"""Feishu streaming cards under load: N answers typing themselves at once through one worker.

A fake vLLM streams each answer like a real one (first token after `--first-token` s, then
two characters every 40 ms, about `--chars` characters); the fake Feishu API (the tests'
one: tests/fakes/feishu_api.py, CardKit included) records every card update with the time
it arrived and refuses more than 10 a second on a card (429), as Feishu does. One `bot
serve` and one `bot worker` process (Redis database 12, SQLite, FEISHU_STREAMING_CARDS on,
BOT_WORKER_CONCURRENCY = N). The N messages come from N users at once.

What it reports: per card, the most updates Feishu saw in any one second (with and without
the final text, which `send` writes at once), and the average rate over the card's life,
against the throttle (FEISHU_CARD_UPDATES_PER_S) and Feishu's limit (10); updates refused;
webhook → card shown (the first words visible) and → card closed; the worker's resident
memory before and at its peak, per card in flight.

    python -m benchmarks.feishu_cards [--cards 200] [--rate 3] [--chars 160]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import tempfile
import time
from typing import Any

import aiohttp
from aiohttp import web

from adapters.feishu import simulate
from benchmarks.common import REDIS_URL, child, flush_redis, free_port, percentile, rss_mib
from tests.fakes.base import serve
from tests.fakes.feishu_api import FakeCard, FeishuFakeState, make_feishu_app

TOKEN = "bench-feishu-token"  # noqa: S105 - the fake app's Verification Token
KEY = "bench-feishu-encrypt-key"
BOT = "ou_bench_bot"
LIMIT = 10  # Feishu's updates per second per card


def streaming_model(first_token_s: float, chars: int) -> web.Application:
    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        question = str(body["messages"][-1]["content"])
        unit = f"关于「{question}」：请在订单页申请退货，七天内无理由退货，运费由我们承担。"
        text = (unit * (chars // len(unit) + 1))[:chars]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await asyncio.sleep(first_token_s)
        for i in range(0, len(text), 2):
            chunk = {
                "id": "bench",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "delta": {"content": text[i : i + 2]}}],
            }
            await response.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
            await asyncio.sleep(0.04)
        done = {
            "id": "bench",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        await response.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


def _message(i: int, app_id: str) -> tuple[dict[str, str], bytes]:
    now = int(time.time())
    return simulate.build_message(
        f"第{i}单怎么退货",
        app_id=app_id,
        verification_token=TOKEN,
        encrypt_key=KEY,
        user_open_id=f"ou_bench_{i}",
        message_id=f"om_bench_{i}",
        chat_id=f"oc_bench_{i}",
        event_id=secrets.token_hex(16),
        now=now,
        nonce=secrets.token_hex(8),
        iv=os.urandom(16),
    )


def most_in_a_second(times: list[float]) -> int:
    """The most of `times` (sorted, seconds) inside any window of one second."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


async def run(
    url: str, state: FeishuFakeState, n: int, worker_pid: int, timeout_s: float
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=n + 10)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def post(i: int) -> float:
            headers, body = _message(i, state.app_id)
            started = time.monotonic()
            async with http.post(url, data=body, headers=headers) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"{resp.status}: {await resp.text()}")
            return started

        await post(-1)  # warm-up: the knowledge index, the token, connections
        await _wait(state, {"om_bench_-1"}, timeout_s)
        before = peak = rss_mib(worker_pid)
        started = dict(
            zip(range(n), await asyncio.gather(*(post(i) for i in range(n))), strict=True)
        )
        ids = {f"om_bench_{i}" for i in range(n)}
        shown: dict[str, float] = {}
        closed: dict[str, float] = {}
        deadline = time.monotonic() + timeout_s
        while len(closed) < n and time.monotonic() < deadline:
            now = time.monotonic()
            peak = max(peak, rss_mib(worker_pid))
            for message in state.card_messages():
                reply_to = message.get("reply_to", "")
                if reply_to in ids and reply_to not in shown:
                    shown[reply_to] = now
                card = state.cards.get(message.get("card_id", ""))
                if reply_to in ids and card is not None and not card.streaming:
                    closed.setdefault(reply_to, now)
            await asyncio.sleep(0.05)
    return {
        "before": before,
        "peak": peak,
        "shown": [
            shown[f"om_bench_{i}"] - started[i] for i in range(n) if f"om_bench_{i}" in shown
        ],
        "closed": [
            closed[f"om_bench_{i}"] - started[i] for i in range(n) if f"om_bench_{i}" in closed
        ],
    }


async def _wait(state: FeishuFakeState, ids: set[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = {
            m.get("reply_to", "")
            for m in state.card_messages()
            if not state.cards[m["card_id"]].streaming
        }
        if ids <= done:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"not closed within {timeout_s:.0f} s: {sorted(ids - done)[:5]}")


def report(state: FeishuFakeState, n: int, rate: float, measured: dict[str, Any]) -> None:
    ours = [
        state.cards[m["card_id"]]
        for m in state.card_messages()
        if m.get("reply_to", "").startswith("om_bench_") and m["reply_to"] != "om_bench_-1"
    ]
    plain = [m for m in state.sent if not m.get("card_id")]
    cards: list[FakeCard] = ours
    streaming = [[u[3] for u in c.updates[:-1]] for c in cards]  # the final text aside
    every = [[u[3] for u in c.updates] for c in cards]
    peak_stream = [most_in_a_second(t) for t in streaming]
    peak_all = [most_in_a_second(t) for t in every]
    # Over a card's typing life, for those that typed for a second or more.
    averages = [(len(t) - 1) / (t[-1] - t[0]) for t in every if len(t) > 1 and t[-1] - t[0] >= 1]
    updates = sum(len(c.updates) for c in cards)
    asked = state.matching("/content")  # the warm-up's card too
    applied = {(c.card_id, u[0]) for c in state.cards.values() for u in c.updates}
    refused = [
        (r.path.split("/cards/")[1].split("/")[0], r.json.get("sequence"))
        for r in asked
        if isinstance(r.json, dict)
    ]
    refused = [(card_id, seq) for card_id, seq in refused if (card_id, seq) not in applied]
    # A sequence below one Feishu already applied (300317): an update overtaken in flight.
    overtaken = sum(
        1
        for card_id, seq in refused
        if isinstance(seq, int) and state.cards[card_id].sequence > seq
    )

    def row(name: str, values: list[float], unit: str = "s") -> str:
        return (
            f"{name:<42} median {percentile(values, 50):6.2f} {unit}   "
            f"p90 {percentile(values, 90):6.2f} {unit}   max {max(values):6.2f} {unit}"
        )

    print(
        f"{n} cards at once, one worker, FEISHU_CARD_UPDATES_PER_S={rate:g} "
        f"(Feishu's limit {LIMIT}/s per card)"
    )
    print(
        f"cards shown {len(cards)}, closed {sum(not c.streaming for c in cards)}, "
        f"plain replies {len(plain)}, updates {updates} "
        f"({updates / max(1, len(cards)):.1f} per card), refused {len(refused)} "
        f"({overtaken} overtaken by a later sequence)"
    )
    print(row("most updates in any second, while typing", [float(p) for p in peak_stream], "/s"))
    print(row("most updates in any second, final included", [float(p) for p in peak_all], "/s"))
    print(row(f"average per second over a card ({len(averages)})", averages, "/s"))
    print(row("webhook -> card shown (first words)", measured["shown"]))
    print(row("webhook -> card closed", measured["closed"]))
    before, peak = measured["before"], measured["peak"]
    print(
        f"worker RSS {before:.0f} MiB before, {peak:.0f} MiB peak: "
        f"{(peak - before) * 1024 / n:.0f} KiB per card in flight"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cards", type=int, default=200)
    parser.add_argument("--rate", type=float, default=3.0, help="FEISHU_CARD_UPDATES_PER_S")
    parser.add_argument("--chars", type=int, default=160, help="characters per answer")
    parser.add_argument("--first-token", type=float, default=0.3)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    flush_redis()
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="bot-bench-feishu-")
    state = FeishuFakeState(app_id="cli_bench", app_secret="bench-secret", bot_open_id=BOT)  # noqa: S106 - a fake's
    with (
        serve(streaming_model(args.first_token, args.chars)) as model_url,
        serve(make_feishu_app(state)) as feishu_url,
    ):
        env = {
            "REDIS_URL": REDIS_URL,
            "DATABASE_URL": f"sqlite:///{data_dir}/bot.db",
            "BOT_DATA_DIR": data_dir,
            "BOT_PORT": str(port),
            "BOT_HOST": "127.0.0.1",
            "BOT_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            "BOT_BURST_WINDOW_S": "0",
            "BOT_RATE_PER_MINUTE": "0",
            "BOT_RATE_PER_DAY": "0",
            "VLLM_BASE_URL": f"{model_url}/v1",
            "VLLM_MODEL": "bench",
            "VLLM_TIMEOUT_S": "120",
            "FEISHU_APP_ID": state.app_id,
            "FEISHU_APP_SECRET": state.app_secret,
            "FEISHU_VERIFICATION_TOKEN": TOKEN,
            "FEISHU_ENCRYPT_KEY": KEY,
            "FEISHU_API_BASE": feishu_url,
            "FEISHU_BOT_OPEN_ID": BOT,
            "FEISHU_STREAMING_CARDS": "true",
            "FEISHU_CARD_UPDATES_PER_S": str(args.rate),
            "BOT_WORKER_CONCURRENCY": str(max(64, args.cards)),
        }
        try:
            with (
                child(["serve"], env, ready_url=f"http://127.0.0.1:{port}/readyz"),
                child(["worker"], env) as worker,
            ):
                url = f"http://127.0.0.1:{port}/webhooks/feishu"
                measured = asyncio.run(run(url, state, args.cards, worker.pid, args.timeout))
        finally:
            flush_redis()
        report(state, args.cards, args.rate, measured)


if __name__ == "__main__":
    main()
