"""WeCom 智能机器人: time from the message webhook to the first visible text, and our share.

A fake vLLM streams each answer like a real one: the first token after `--first-token`
seconds (0.3), then two characters every 30 ms. One `bot serve` and one `bot worker`
process (Redis database 12, SQLite). For each of N messages, sent one after another from
N users, we POST the signed, encrypted message callback, then refresh its stream every
10 ms (WeCom itself refreshes far less often; its interval is the platform's, not ours)
and note when the first text shows and when the answer finishes.

Our overhead is the time to first text minus the model's own first-token delay. It splits
into *before the model* (webhook → the model request arrives at the fake: intake, queue,
worker, lock, memory, knowledge search, prompt) and *after the first token* (the fake
writes it → a refresh shows it: parse, sink, Redis APPEND, a refresh reading it).

    python -m benchmarks.aibot_first_text [--messages 30] [--first-token 0.3]

With `--concurrent N` the N messages are sent at once (N users, N streams open together),
each refreshed every 250 ms, and the worker's resident memory is sampled: what N streams
in flight cost one worker (BOT_WORKER_CONCURRENCY is set to N).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import string
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from adapters.wecom_aibot import simulate
from benchmarks.common import REDIS_URL, child, flush_redis, free_port, percentile, rss_mib
from tests.fakes.base import serve

TOKEN = "benchaibottoken"  # noqa: S105 - the fake bot's callback Token
KEY = (string.ascii_letters + string.digits)[:43]
POLL_S = 0.01


@dataclass
class ModelClock:
    """When each question reached the fake model and when its first token was written."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    asked: dict[str, float] = field(default_factory=dict)
    first_token: dict[str, float] = field(default_factory=dict)


def streaming_model(first_token_s: float, clock: ModelClock) -> web.Application:
    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        question = str(body["messages"][-1]["content"])
        with clock.lock:
            clock.asked.setdefault(question, time.monotonic())
        text = f"您好，关于「{question}」：请在订单页申请退货，七天内无理由退货，运费由我们承担。"
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
            if i == 0:
                with clock.lock:
                    clock.first_token.setdefault(question, time.monotonic())
            await asyncio.sleep(0.03)
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


def _stamp() -> dict[str, Any]:
    return {
        "timestamp": str(int(time.time())),
        "nonce": secrets.token_hex(6),
        "random_prefix": os.urandom(16),
    }


async def _post(http: aiohttp.ClientSession, url: str, data: dict[str, Any]) -> dict[str, Any]:
    query, body = simulate.build_post(data, token=TOKEN, aes_key=KEY, **_stamp())
    async with http.post(url, params=query, data=body) as resp:
        raw = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{resp.status}: {raw[:200]!r}")
    return simulate.open_reply(raw, token=TOKEN, aes_key=KEY)


async def one(
    http: aiohttp.ClientSession, url: str, i: int, poll_s: float = POLL_S
) -> tuple[str, float, float, float]:
    """(question, POST time, first text seen, finished) for message `i`."""
    question = f"第{i}单怎么退货"
    user = f"bench-user-{i}"
    started = time.monotonic()
    opened = await _post(http, url, simulate.text_message(question, msgid=f"bench-{i}", user=user))
    sid = opened["stream"]["id"]
    first = 0.0
    while True:
        answer = await _post(
            http, url, simulate.refresh(sid, msgid=secrets.token_hex(8), user=user)
        )
        now = time.monotonic()
        if answer["stream"]["content"] and not first:
            first = now
        if answer["stream"]["finish"]:
            return question, started, first or now, now
        if now - started > 120:
            raise RuntimeError(f"message {i} not finished in 120 s")
        await asyncio.sleep(poll_s)


async def run(url: str, n: int) -> list[tuple[str, float, float, float]]:
    async with aiohttp.ClientSession() as http:
        await one(http, url, -1)  # warm-up: the knowledge index, connections
        return [await one(http, url, i) for i in range(n)]


async def run_together(
    url: str, n: int, worker_pid: int
) -> tuple[list[tuple[str, float, float, float]], float, float]:
    """All `n` at once; (results, worker RSS before, worker RSS peak) in MiB."""
    connector = aiohttp.TCPConnector(limit=n + 10)
    async with aiohttp.ClientSession(connector=connector) as http:
        await one(http, url, -1)
        before = peak = rss_mib(worker_pid)
        jobs = asyncio.gather(*(one(http, url, i, poll_s=0.25) for i in range(n)))
        while not jobs.done():
            peak = max(peak, rss_mib(worker_pid))
            await asyncio.sleep(0.1)
        return await jobs, before, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=30)
    parser.add_argument("--first-token", type=float, default=0.3)
    parser.add_argument("--concurrent", type=int, default=0, help="N messages at once")
    args = parser.parse_args()
    flush_redis()
    clock = ModelClock()
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="bot-bench-aibot-")
    with serve(streaming_model(args.first_token, clock)) as model_url:
        env = {
            "REDIS_URL": REDIS_URL,
            "DATABASE_URL": f"sqlite:///{data_dir}/bot.db",
            "BOT_DATA_DIR": data_dir,
            "BOT_PORT": str(port),
            "BOT_HOST": "127.0.0.1",
            "BOT_LOG_LEVEL": "WARNING",
            "BOT_BURST_WINDOW_S": "0",
            "BOT_RATE_PER_MINUTE": "0",
            "BOT_RATE_PER_DAY": "0",
            "VLLM_BASE_URL": f"{model_url}/v1",
            "VLLM_MODEL": "bench",
            "WECOM_AIBOT_TOKEN": TOKEN,
            "WECOM_AIBOT_AES_KEY": KEY,
            "BOT_WORKER_CONCURRENCY": str(max(64, args.concurrent)),
        }
        memory = ""
        try:
            with (
                child(["serve"], env, ready_url=f"http://127.0.0.1:{port}/readyz"),
                child(["worker"], env) as worker,
            ):
                url = f"http://127.0.0.1:{port}/webhooks/wecom_aibot"
                if args.concurrent:
                    results, before_mib, peak_mib = asyncio.run(
                        run_together(url, args.concurrent, worker.pid)
                    )
                    memory = (
                        f"worker RSS {before_mib:.0f} MiB before, {peak_mib:.0f} MiB peak: "
                        f"{(peak_mib - before_mib) * 1024 / args.concurrent:.0f} KiB per stream"
                    )
                else:
                    results = asyncio.run(run(url, args.messages))
        finally:
            flush_redis()
    first_text = [first - started for _, started, first, _ in results]
    before = [clock.asked[q] - started for q, started, _, _ in results]
    after = [first - clock.first_token[q] for q, _, first, _ in results]
    overhead = [f - args.first_token for f in first_text]
    total = [done - started for _, started, _, done in results]

    def row(name: str, values: list[float]) -> str:
        ms = [v * 1000 for v in values]
        return (
            f"{name:<34} median {percentile(ms, 50):7.1f} ms   p90 {percentile(ms, 90):7.1f} ms"
            f"   max {max(ms):7.1f} ms"
        )

    count, poll = (args.concurrent, 0.25) if args.concurrent else (args.messages, POLL_S)
    together = " at once" if args.concurrent else ", one after another"
    print(
        f"{count} messages{together}, first token after {args.first_token * 1000:.0f} ms, "
        f"refresh every {poll * 1000:.0f} ms"
    )
    print(row("webhook -> first text", first_text))
    print(row("our overhead (minus first token)", overhead))
    print(row("  before the model", before))
    print(row("  first token -> refresh shows it", after))
    print(row("webhook -> finished", total))
    if memory:
        print(memory)


if __name__ == "__main__":
    main()
