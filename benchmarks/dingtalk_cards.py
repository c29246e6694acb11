"""DingTalk AI cards under load: N answers typing themselves at once through one worker.

The model is the fake vLLM of benchmarks/feishu_cards.py (first token after `--first-token`
s, then two characters every 40 ms, about `--chars` characters); the DingTalk API is the
tests' fake (tests/fakes/dingtalk_api.py, AI cards included), which records when each card
was created and every streaming update with the time it arrived. One `bot serve` and one
`bot worker` process (Redis database 11 unless BENCH_REDIS_URL, SQLite,
DINGTALK_CARD_TEMPLATE_ID set, BOT_WORKER_CONCURRENCY = N). The N robot messages (1:1, signed
as DingTalk signs them) come from N users at once.

What it reports: webhook → card shown (createAndDeliver, the first words visible) and our
overhead on top of the model's first token; → card finished (FINISHED); per card, the most
updates in any one second and the average rate, against DINGTALK_CARD_UPDATES_PER_S; the
worker's resident memory before and at its peak, per card in flight.

    python -m benchmarks.dingtalk_cards [--cards 200] [--rate 3] [--chars 160]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from typing import Any

import aiohttp

from adapters.dingtalk import cards as dingtalk_cards
from adapters.dingtalk import simulate
from benchmarks.common import child, free_port, percentile, rss_mib
from benchmarks.feishu_cards import most_in_a_second, streaming_model
from tests.fakes.base import serve
from tests.fakes.dingtalk_api import TEMPLATE_ID, DingTalkFakeState, make_dingtalk_app

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")


def _track(i: int) -> str:
    return dingtalk_cards.out_track_id("default", f"msgBench{i}==")


def _message(i: int, state: DingTalkFakeState, api_url: str) -> tuple[dict[str, str], Any]:
    # A sign covers only its timestamp and is good for one message: one millisecond each.
    stamp = int(time.time() * 1000) - 10_000 + i
    body = simulate.robot_body(
        f"第{i}单怎么退货",
        msg_id=f"msgBench{i}==",
        staff_id=f"staff{i}",
        conversation_id=f"cidBench{i}==",
        session_webhook=state.session_url(api_url),
        create_at_ms=stamp,
        robot_code=state.robot_code,
    )
    return simulate.robot_headers(app_secret=state.app_secret, timestamp_ms=stamp), body


def _finished(state: DingTalkFakeState, track: str) -> bool:
    card = state.cards.get(track)
    return card is not None and card.flow_status == dingtalk_cards.FLOW_FINISHED


async def run(
    url: str, api_url: str, state: DingTalkFakeState, n: int, worker_pid: int, timeout_s: float
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=n + 10)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def post(i: int) -> float:
            headers, body = _message(i, state, api_url)
            started = time.monotonic()
            async with http.post(url, json=body, headers=headers) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"{resp.status}: {await resp.text()}")
            return started

        await post(-1)  # warm-up: the knowledge index, the token, connections
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if _finished(state, _track(-1)):
                break
            await asyncio.sleep(0.1)
        before = peak = rss_mib(worker_pid)
        started = await asyncio.gather(*(post(i) for i in range(n)))
        finished: dict[int, float] = {}
        deadline = time.monotonic() + timeout_s
        while len(finished) < n and time.monotonic() < deadline:
            now = time.monotonic()
            peak = max(peak, rss_mib(worker_pid))
            for i in range(n):
                if i not in finished and _finished(state, _track(i)):
                    finished[i] = now
            await asyncio.sleep(0.05)
    shown = [
        state.cards[_track(i)].created_at - started[i] for i in range(n) if _track(i) in state.cards
    ]
    return {
        "before": before,
        "peak": peak,
        "shown": shown,
        "finished": [finished[i] - started[i] for i in finished],
    }


def report(
    state: DingTalkFakeState, n: int, rate: float, first_token_s: float, measured: dict[str, Any]
) -> None:
    ours = [state.cards[_track(i)] for i in range(n) if _track(i) in state.cards]
    streaming = [[u[5] for u in c.updates[:-1]] for c in ours]  # the final text aside
    every = [[u[5] for u in c.updates] for c in ours]
    peak_stream = [float(most_in_a_second(t)) for t in streaming]
    peak_all = [float(most_in_a_second(t)) for t in every]
    averages = [(len(t) - 1) / (t[-1] - t[0]) for t in every if len(t) > 1 and t[-1] - t[0] >= 1]
    updates = sum(len(c.updates) for c in ours)
    markdown = [m for m in state.sent if m.get("via") == "session"]

    def row(name: str, values: list[float], unit: str = "s") -> str:
        if not values:
            return f"{name:<42} (none)"
        return (
            f"{name:<42} median {percentile(values, 50):6.3f} {unit}   "
            f"p90 {percentile(values, 90):6.3f} {unit}   max {max(values):6.3f} {unit}"
        )

    print(f"{n} cards at once, one worker, DINGTALK_CARD_UPDATES_PER_S={rate:g}")
    print(
        f"cards shown {len(ours)}, finished {sum(c.flow_status == '3' for c in ours)}, "
        f"markdown replies {len(markdown)}, updates {updates} "
        f"({updates / max(1, len(ours)):.1f} per card)"
    )
    print(row("most updates in any second, while typing", peak_stream, "/s"))
    print(row("most updates in any second, final included", peak_all, "/s"))
    print(row(f"average per second over a card ({len(averages)})", averages, "/s"))
    print(row("webhook -> card shown (first words)", measured["shown"]))
    print(
        row(
            "  our overhead on the model's first token",
            [s - first_token_s for s in measured["shown"]],
        )
    )
    print(row("webhook -> card finished", measured["finished"]))
    before, peak = measured["before"], measured["peak"]
    print(
        f"worker RSS {before:.0f} MiB before, {peak:.0f} MiB peak: "
        f"{(peak - before) * 1024 / n:.0f} KiB per card in flight"
    )


def main() -> None:
    import redis

    parser = argparse.ArgumentParser()
    parser.add_argument("--cards", type=int, default=200)
    parser.add_argument("--rate", type=float, default=3.0, help="DINGTALK_CARD_UPDATES_PER_S")
    parser.add_argument("--chars", type=int, default=160, help="characters per answer")
    parser.add_argument("--first-token", type=float, default=0.3)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    flush = redis.Redis.from_url(REDIS_URL).flushdb
    flush()
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="bot-bench-dingtalk-")
    state = DingTalkFakeState()
    with (
        serve(streaming_model(args.first_token, args.chars)) as model_url,
        serve(make_dingtalk_app(state)) as api_url,
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
            "DINGTALK_APP_KEY": state.app_key,
            "DINGTALK_APP_SECRET": state.app_secret,
            "DINGTALK_ROBOT_CODE": state.robot_code,
            "DINGTALK_API_BASE": api_url,
            "DINGTALK_OAPI_BASE": "http://127.0.0.1",
            "DINGTALK_CARD_TEMPLATE_ID": TEMPLATE_ID,
            "DINGTALK_CARD_UPDATES_PER_S": str(args.rate),
            "BOT_WORKER_CONCURRENCY": str(max(64, args.cards)),
        }
        try:
            with (
                child(["serve"], env, ready_url=f"http://127.0.0.1:{port}/readyz"),
                child(["worker"], env) as worker,
            ):
                url = f"http://127.0.0.1:{port}/webhooks/dingtalk"
                measured = asyncio.run(
                    run(url, api_url, state, args.cards, worker.pid, args.timeout)
                )
        finally:
            flush()
        report(state, args.cards, args.rate, args.first_token, measured)


if __name__ == "__main__":
    main()
