"""Webhooks per second the web process accepts, and its ACK latency.

Each request is a real WeCom callback: signed, AES-encrypted XML with a unique MsgId. The
web process (`bot serve`, one process) verifies, decrypts, parses, deduplicates in Redis and
enqueues to the Celery broker before it answers. No worker runs, so nothing is consumed.
Requests are built before the clock starts so the client's crypto is not measured.

    python -m benchmarks.webhook_throughput [--requests 3000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

import aiohttp

from adapters.wecom import simulate as wecom_simulate
from benchmarks.common import REDIS_URL, child, flush_redis, free_port, percentile, wecom_env


def build_requests(n: int, env: dict[str, str]) -> list[tuple[dict[str, str], bytes]]:
    now = int(time.time())
    return [
        wecom_simulate.build_callback(
            f"请问第{i}号订单什么时候发货？",
            corp_id=env["WECOM_CORP_ID"],
            agent_id=env["WECOM_AGENT_ID"],
            token=env["WECOM_TOKEN"],
            aes_key=env["WECOM_AES_KEY"],
            from_user=f"user{i % 500}",
            msg_id=str(7_000_000_000_000_000_000 + i),
            create_time=now,
            timestamp=str(now),
            nonce=str(100000 + i),
            random_prefix=os.urandom(16),
        )
        for i in range(n)
    ]


async def fire(
    url: str, reqs: list[tuple[dict[str, str], bytes]], concurrency: int
) -> tuple[list[float], float, dict[int, int]]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()
    for r in reqs:
        queue.put_nowait(r)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            while not queue.empty():
                query, body = queue.get_nowait()
                start = time.perf_counter()
                async with http.post(url, params=query, data=body) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, elapsed, statuses


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    port = free_port()
    env = {
        **wecom_env(),
        "REDIS_URL": REDIS_URL,
        "BOT_PORT": str(port),
        "BOT_HOST": "127.0.0.1",
        "BOT_LOG_LEVEL": "WARNING",
        "BOT_DATA_DIR": tempfile.mkdtemp(prefix="bot-bench-"),
    }
    flush_redis()
    reqs = build_requests(args.requests + 200, env)
    base = f"http://127.0.0.1:{port}"
    with child(["serve"], env, ready_url=f"{base}/readyz"):
        asyncio.run(fire(f"{base}/webhooks/wecom", reqs[:200], 10))  # warm-up
        latencies, elapsed, statuses = asyncio.run(
            fire(f"{base}/webhooks/wecom", reqs[200:], args.concurrency)
        )
    flush_redis()
    ms = [x * 1000 for x in latencies]
    print(
        f"webhook intake, 1 web process, {args.requests} requests, concurrency {args.concurrency}"
    )
    print(f"  statuses:   {statuses}")
    print(f"  throughput: {args.requests / elapsed:,.0f} webhooks/s")
    print(
        f"  ACK latency p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms, "
        f"max {max(ms):.1f} ms"
    )


if __name__ == "__main__":
    main()
