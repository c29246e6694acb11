"""How many conversations one worker process holds in flight against a slow model.

A fake OpenAI-compatible server answers every request after 2 s (like a busy vLLM). One
`bot worker` process (thread pool, BOT_WORKER_CONCURRENCY) consumes N web-chat messages from
N different conversations, queued all at once. We report the peak number of model requests
open at the same moment and the wall time: with one conversation at a time, N messages
would take N × 2 s.

    python -m benchmarks.worker_inflight [--messages 200] [--concurrency 64] [--delay 2]
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

from benchmarks.common import REDIS_URL, child, flush_redis
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


def slow_model(delay_s: float, counter: InFlight) -> web.Application:
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
            return await _stream(request, body["model"], text)
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


async def _stream(request: web.Request, model: str, text: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for piece in (text[:4], text[4:], None):
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


def wait_replied(n: int, timeout_s: float, prefix: str = "") -> float:
    sync = redis.Redis.from_url(REDIS_URL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = sum(1 for _ in sync.scan_iter(f"replied:web:default:{prefix}*", count=1000))
        if done >= n:
            return time.monotonic()
        time.sleep(0.1)
    raise RuntimeError("not all messages were answered in time")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--delay", type=float, default=2.0)
    args = parser.parse_args()
    flush_redis()
    counter = InFlight()
    with serve(slow_model(args.delay, counter)) as url:
        env = {
            "REDIS_URL": REDIS_URL,
            "VLLM_BASE_URL": f"{url}/v1",
            "VLLM_MODEL": "bench",
            "VLLM_TIMEOUT_S": "60",
            "BOT_LOG_LEVEL": "WARNING",
            "BOT_DATA_DIR": tempfile.mkdtemp(prefix="bot-bench-"),
            "BOT_WORKER_CONCURRENCY": str(args.concurrency),
        }
        configure(Settings.load(None, core={"redis_url": REDIS_URL}))
        with child(["worker"], env):
            asyncio.run(enqueue(1, prefix="warmup"))  # loads the knowledge index, connects
            wait_replied(1, timeout_s=60)
            counter.peak = 0
            started = time.monotonic()
            asyncio.run(enqueue(args.messages))
            finished = wait_replied(args.messages, args.messages * args.delay + 60, "bench-")
    flush_redis()
    elapsed = finished - started
    serial = args.messages * args.delay
    print(
        f"one worker process, pool=threads, concurrency {args.concurrency}, "
        f"{args.messages} conversations, model latency {args.delay:.1f} s"
    )
    print(f"  peak model requests in flight: {counter.peak}")
    print(
        f"  wall time: {elapsed:.1f} s  (one at a time: {serial:.0f} s, "
        f"speed-up {serial / elapsed:.1f}x)"
    )
    print(f"  throughput: {args.messages / elapsed:.1f} answers/s")


if __name__ == "__main__":
    main()
