"""Webhook ingress: our web process against a bare aiohttp handler, in the same run.

Each request is a real platform callback with a unique message id: WeCom (signed,
AES-encrypted XML), Feishu (encrypted, signed JSON) and DingTalk (a robot message with its
header sign); 10 % of them are a platform's retry of an earlier message (same id, fresh
signature). Our web process (`bot serve`, one process) verifies, decrypts, parses,
deduplicates, tickets and queues each one in one Redis step before it answers; no worker
runs. The reference (benchmarks/bare_server.py) reads the body and answers "success".
Both servers are pinned to CPU 0 and the load generator to CPU 1; the rounds alternate
(reference, ours, reference, ours) and the better round of each counts. At the end the
queue is counted: every first delivery must be queued once, every retry not at all.

    python -m benchmarks.webhook_throughput [--requests 3000] [--concurrency 64]
                                            [--platforms wecom,feishu,dingtalk]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import psutil
import redis

from adapters.dingtalk import simulate as dingtalk_simulate
from adapters.feishu import simulate as feishu_simulate
from adapters.wecom import simulate as wecom_simulate
from benchmarks.common import REDIS_URL, ROOT, child, flush_redis, free_port, percentile, wecom_env

SERVER_CPU, LOAD_CPU = {0}, {1}
RETRY_SHARE = 0.10
FEISHU = {
    "FEISHU_APP_ID": "cli_bench",
    "FEISHU_APP_SECRET": "bench-secret",
    "FEISHU_VERIFICATION_TOKEN": "bench-verification",
    "FEISHU_ENCRYPT_KEY": "bench encrypt key",
    "FEISHU_BOT_OPEN_ID": "ou_bench_bot",
    "FEISHU_API_BASE": "http://127.0.0.1:9",
}
DINGTALK = {
    "DINGTALK_APP_KEY": "dingbenchkey",
    "DINGTALK_APP_SECRET": "dingtalk-bench-secret",
    "DINGTALK_API_BASE": "http://127.0.0.1:9",
}

Request = tuple[dict[str, str], dict[str, str], bytes]  # query, headers, body


def _ids(n: int) -> list[int]:
    """Message numbers in sending order: each new one once, RETRY_SHARE of them again later."""
    order = list(range(n))
    step = round(1 / RETRY_SHARE)
    for i in range(step, n, step):
        order.insert(i + i // step, i - step // 2)  # a retry of a message sent a moment ago
    return order[: n + n // step]


def wecom_requests(n: int) -> list[Request]:
    env, now = wecom_env(), int(time.time())
    out = []
    for k, i in enumerate(_ids(n)):
        query, body = wecom_simulate.build_callback(
            f"请问第{i}号订单什么时候发货？",
            corp_id=env["WECOM_CORP_ID"],
            agent_id=env["WECOM_AGENT_ID"],
            token=env["WECOM_TOKEN"],
            aes_key=env["WECOM_AES_KEY"],
            from_user=f"user{i % 500}",
            msg_id=str(7_000_000_000_000_000_000 + i),
            create_time=now,
            timestamp=str(now),
            nonce=str(100000 + k),
            random_prefix=os.urandom(16),
        )
        out.append((query, {}, body))
    return out


def feishu_requests(n: int) -> list[Request]:
    now = int(time.time())
    out = []
    for k, i in enumerate(_ids(n)):
        headers, body = feishu_simulate.build_message(
            f"请问第{i}号订单什么时候发货？",
            app_id=FEISHU["FEISHU_APP_ID"],
            verification_token=FEISHU["FEISHU_VERIFICATION_TOKEN"],
            encrypt_key=FEISHU["FEISHU_ENCRYPT_KEY"],
            user_open_id=f"ou_user{i % 500}",
            message_id=f"om_bench_{i}",
            chat_id=f"oc_chat{i % 500}",
            event_id=f"ev_bench_{i}",
            now=now,
            nonce=str(k),
            iv=os.urandom(16),
        )
        out.append(({}, headers, body))
    return out


def dingtalk_requests(n: int) -> list[Request]:
    now_ms = int(time.time() * 1000)
    out = []
    for k, i in enumerate(_ids(n)):
        body = dingtalk_simulate.robot_body(
            f"请问第{i}号订单什么时候发货？",
            msg_id=f"msgbench{i}",
            staff_id=f"staff{i % 500}",
            conversation_id=f"cidbench{i % 500}",
            session_webhook="",
            create_at_ms=now_ms,
        )
        # A retry carries the message's first header pair, as DingTalk's own retry does.
        first = now_ms - i
        headers = dingtalk_simulate.robot_headers(
            app_secret=DINGTALK["DINGTALK_APP_SECRET"], timestamp_ms=first
        )
        import json

        out.append(({}, headers, json.dumps(body, ensure_ascii=False).encode()))
        del k
    return out


BUILDERS: dict[str, Callable[[int], list[Request]]] = {
    "wecom": wecom_requests,
    "feishu": feishu_requests,
    "dingtalk": dingtalk_requests,
}


@dataclass
class Round:
    rps: float
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int]
    cpu_ms: float  # the server's CPU time (user + system) per request


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def fire(url: str, reqs: list[Request], concurrency: int, server_pid: int) -> Round:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    pending = iter(reqs)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            for query, headers, body in pending:
                start = time.perf_counter()
                async with http.post(url, params=query, headers=headers, data=body) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                latencies.append(time.perf_counter() - start)

        started, cpu_before = time.perf_counter(), _cpu_s(server_pid)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - started, _cpu_s(server_pid) - cpu_before
    ms = [x * 1000 for x in latencies]
    return Round(
        len(reqs) / elapsed,
        percentile(ms, 50),
        percentile(ms, 99),
        statuses,
        cpu * 1000 / len(reqs),
    )


def _bare(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bare_server", str(port)], cwd=ROOT)
    os.sched_setaffinity(proc.pid, SERVER_CPU)
    import urllib.request

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the reference server did not start")


def run_platform(platform: str, args: argparse.Namespace) -> None:
    reqs = BUILDERS[platform](args.requests)
    warm = BUILDERS[platform](200)
    unique = len({body for _, _, body in reqs}) if platform == "dingtalk" else args.requests
    port, bare_port = free_port(), free_port()
    env = {
        **wecom_env(),
        **FEISHU,
        **DINGTALK,
        "REDIS_URL": REDIS_URL,
        "BOT_PORT": str(port),
        "BOT_HOST": "127.0.0.1",
        "BOT_LOG_LEVEL": "WARNING",
        "BOT_DATA_DIR": tempfile.mkdtemp(prefix="bot-bench-"),
    }
    ours: list[Round] = []
    bare: list[Round] = []
    queued: list[int] = []
    bare_proc = _bare(bare_port)
    try:
        serve = child(["serve"], env, ready_url=f"http://127.0.0.1:{port}/readyz", cpus=SERVER_CPU)
        with serve as server:
            for _ in range(2):
                bare_url = f"http://127.0.0.1:{bare_port}/webhooks/{platform}"
                asyncio.run(fire(bare_url, warm, args.concurrency, bare_proc.pid))
                bare.append(asyncio.run(fire(bare_url, reqs, args.concurrency, bare_proc.pid)))
                flush_redis()
                url = f"http://127.0.0.1:{port}/webhooks/{platform}"
                warm_up = BUILDERS[platform](400)
                asyncio.run(fire(url, warm_up, args.concurrency, server.pid))
                flush_redis()
                ours.append(asyncio.run(fire(url, reqs, args.concurrency, server.pid)))
                queued.append(int(redis.Redis.from_url(REDIS_URL).llen("bot")))
                flush_redis()
    finally:
        bare_proc.terminate()
        bare_proc.wait(timeout=10)
    best_ours = max(ours, key=lambda r: r.rps)
    best_bare = max(bare, key=lambda r: r.rps)
    print(
        f"  {platform}: {len(reqs)} requests ({len(reqs) - args.requests} retries), "
        f"{args.concurrency} in flight"
    )
    print(f"    bare aiohttp: {best_bare.rps:,.0f} req/s, p99 {best_bare.p99_ms:.1f} ms")
    print(
        f"    ours:         {best_ours.rps:,.0f} req/s, p50 {best_ours.p50_ms:.1f} ms, "
        f"p99 {best_ours.p99_ms:.1f} ms, statuses {best_ours.statuses}"
    )
    print(f"    ratio ours/bare: {best_ours.rps / best_bare.rps:.2f}")
    # CPU time per request holds on a busy machine, where req/s moves with the neighbours.
    cpu_ours = min(r.cpu_ms for r in ours)
    cpu_bare = min(r.cpu_ms for r in bare)
    print(
        f"    server CPU per request: ours {cpu_ours:.3f} ms, bare {cpu_bare:.3f} ms "
        f"(ratio bare/ours {cpu_bare / cpu_ours:.2f})"
    )
    print(f"    queued per round: {queued} (expected {unique} each: every first delivery once)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--platforms", default="wecom,feishu,dingtalk")
    args = parser.parse_args()
    os.sched_setaffinity(0, LOAD_CPU)
    print(
        f"webhook ingress, one web process on CPU {min(SERVER_CPU)}, load from CPU "
        f"{min(LOAD_CPU)} ({os.cpu_count()} CPUs), {RETRY_SHARE:.0%} platform retries"
    )
    for platform in args.platforms.split(","):
        run_platform(platform.strip(), args)


if __name__ == "__main__":
    main()
