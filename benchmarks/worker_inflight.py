"""How many conversations one worker process holds in flight against a slow model.

A fake OpenAI-compatible server answers every request after 2 s (like a busy vLLM). One
`bot worker` process (every task on one event loop, BOT_WORKER_CONCURRENCY at once)
consumes N web-chat messages from N different conversations, queued all at once, with the
burst window on (1.5 s, the default) and the database of choice. We report the peak number
of model requests open at the same moment, answers per second, the worker's own CPU time
per answer (from /proc, the model's 2 s excluded: it is spent in the fake) and its memory
per conversation in flight. With one conversation at a time, N messages would take N x 2 s.

The fake streams its answer in 2 pieces by default; `--tokens 100` streams 100 pieces of two
characters, `--token-gap` apart (0.02 s: 50 a second), as vLLM does (one event per token):
the cost of the streamed deltas of the web channel.

    python -m benchmarks.worker_inflight [--messages 1000] [--concurrency 1000] [--delay 2]
                                         [--database sqlite|postgres]
                                         [--tokens 2] [--token-gap 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time

import redis
import redis.asyncio as aioredis
from aiohttp import web

from benchmarks.common import REDIS_URL, child, cpu_seconds, flush_redis, rss_mib
from bot.domain import InboundMessage, Platform
from bot.pipeline.intake import accept
from bot.settings import Settings
from tests.fakes.base import serve
from workers.celery_app import configure


class InFlight:
    """Counts open requests at the fake model, and the peak."""

    def __init__(self) -> None:
        self.open = 0
        self.peak = 0
        self.total = 0
        self.lock = threading.Lock()


# What a longer answer says, cut into pieces of two characters when `--tokens` asks for more.
FILLER = "您好，这边已经为您查到订单的物流信息，包裹正在派送途中，预计明天送达，请留意电话。"


def pieces_of(text: str, tokens: int) -> list[str]:
    """The answer as the fake streams it: 2 pieces of `text`, or `tokens` pieces of two
    characters each (`text`, then the filler as often as needed)."""
    if tokens <= 2:
        return [text[:4], text[4:]]
    long = text + FILLER * (2 * tokens // len(FILLER) + 1)
    return [long[i : i + 2] for i in range(0, 2 * tokens, 2)]


def slow_model(
    delay_s: float, counter: InFlight, tokens: int = 2, token_gap_s: float = 0.0
) -> web.Application:
    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        with counter.lock:
            counter.open += 1
            counter.total += 1
            counter.peak = max(counter.peak, counter.open)
        try:
            await asyncio.sleep(delay_s)
        finally:
            with counter.lock:
                counter.open -= 1
        text = "好的：" + str(body["messages"][-1]["content"])
        if body.get("stream"):
            return await _stream(request, body["model"], pieces_of(text, tokens), token_gap_s)
        return web.json_response(
            {
                "id": "bench",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": text},
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


async def _stream(
    request: web.Request, model: str, pieces: list[str], gap_s: float
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for index, piece in enumerate([*pieces, None]):
        if index and gap_s and piece is not None:
            await asyncio.sleep(gap_s)
        delta = {"content": piece} if piece is not None else {}
        chunk = {
            "id": "bench",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": None if piece else "stop"}],
        }
        await response.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def enqueue(n: int, prefix: str = "bench") -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        for i in range(n):
            msg = InboundMessage(
                Platform.WEB,
                "default",
                f"{prefix}-{i}",
                f"{prefix}-conv-{i}",
                f"user-{i}",
                f"第{i}个问题",
            )
            await accept(client, msg)
    finally:
        await client.aclose()


def wait_replied(
    n: int, timeout_s: float, prefix: str = "", pid: int | None = None
) -> tuple[float, float]:
    """When `n` messages are answered, and the worker's largest RSS seen meanwhile."""
    sync = redis.Redis.from_url(REDIS_URL)
    deadline = time.monotonic() + timeout_s
    peak = 0.0
    while time.monotonic() < deadline:
        if pid is not None:
            peak = max(peak, rss_mib(pid))
        done = sum(1 for _ in sync.scan_iter(f"replied:web:default:{prefix}*", count=1000))
        if done >= n:
            return time.monotonic(), peak
        time.sleep(0.1)
    raise RuntimeError("not all messages were answered in time")


PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _database(kind: str) -> tuple[str, str]:
    """(DATABASE_URL, name to drop) for a fresh PostgreSQL database, or SQLite in a temp dir."""
    if kind == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix='bot-bench-db-')}/bot.db", ""
    import psycopg

    name = f"bot_bench_{int(time.time())}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", name


def _drop(name: str) -> None:
    if name:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=2.0)
    parser.add_argument("--burst-window", type=float, default=1.5)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--tokens", type=int, default=2, help="streamed pieces per answer")
    parser.add_argument("--token-gap", type=float, default=0.02, help="seconds between pieces")
    args = parser.parse_args()
    gap_s = args.token_gap if args.tokens > 2 else 0.0
    flush_redis()
    counter = InFlight()
    database_url, drop = _database(args.database)
    try:
        with serve(slow_model(args.delay, counter, args.tokens, gap_s)) as url:
            env = {
                "REDIS_URL": REDIS_URL,
                "DATABASE_URL": database_url,
                "VLLM_BASE_URL": f"{url}/v1",
                "VLLM_MODEL": "bench",
                "VLLM_TIMEOUT_S": "60",
                "AGENT_TIMEOUT_S": "120",
                "BOT_LOG_LEVEL": "WARNING",
                "BOT_DATA_DIR": tempfile.mkdtemp(prefix="bot-bench-"),
                "BOT_WORKER_CONCURRENCY": str(args.concurrency),
                "BOT_BURST_WINDOW_S": str(args.burst_window),
                "BOT_RATE_PER_MINUTE": "0",
                "BOT_RATE_PER_DAY": "0",
            }
            configure(Settings.load(None, core={"redis_url": REDIS_URL}))
            with child(["worker"], env) as worker:
                asyncio.run(enqueue(1, prefix="warmup"))  # loads the knowledge index, connects
                wait_replied(1, timeout_s=60)
                counter.peak = 0
                rss_before, cpu_before = rss_mib(worker.pid), cpu_seconds(worker.pid)
                started = time.monotonic()
                asyncio.run(enqueue(args.messages))
                answer_s = args.delay + args.tokens * gap_s
                finished, rss_peak = wait_replied(
                    args.messages, args.messages * answer_s + 60, "bench-", worker.pid
                )
                cpu = cpu_seconds(worker.pid) - cpu_before
    finally:
        flush_redis()
        _drop(drop)
    elapsed = finished - started
    serial = args.messages * args.delay
    print(
        f"one worker process (tasks on one event loop), concurrency {args.concurrency}, "
        f"{args.messages} conversations, model latency {args.delay:.1f} s, "
        f"burst window {args.burst_window:.1f} s, {args.database}, "
        f"{args.tokens} streamed pieces per answer" + (f", {gap_s:.2f} s apart" if gap_s else "")
    )
    print(f"  peak model requests in flight: {counter.peak}")
    print(
        f"  wall time: {elapsed:.1f} s  (one at a time: {serial:.0f} s, "
        f"speed-up {serial / elapsed:.1f}x)"
    )
    print(f"  throughput: {args.messages / elapsed:.1f} answers/s")
    print(f"  worker CPU: {cpu * 1000 / args.messages:.2f} ms per answer ({cpu:.1f} s in all)")
    per_conv = (rss_peak - rss_before) * 1024 / max(1, counter.peak)
    print(
        f"  worker memory: {rss_before:.0f} MiB before, {rss_peak:.0f} MiB at most "
        f"({per_conv:.0f} KiB per conversation in flight)"
    )


if __name__ == "__main__":
    main()
