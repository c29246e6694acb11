"""Measure the order tools' cost per call on the SQL backend (SQLite), identity included.

Run from the repository root (needs Redis for the failed-proof counter)::

    .venv/bin/python -m benchmarks.order_tools                 # 200 calls per case
    .venv/bin/python -m benchmarks.order_tools --calls 1000 --redis redis://127.0.0.1:6379/1

Each call resolves the user's binding (`resolve_customer`) and runs one tool through the
registry (schema check, timeout, JSON result), as one step of a turn would. The demo data
(`examples/orders.csv`, `examples/shipments.csv`) is loaded into a temporary SQLite
database. "their order" is another customer's: its time should match "own order", so
timing tells nothing about whether an order exists or whose it is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from bot.db.engine import get_engine
from bot.domain import InboundMessage, Platform
from bot.llm.base import ToolCall
from bot.orders.bindings import BindingStore
from bot.orders.sql import SqlOrderBackend, import_orders_csv, import_shipments_csv
from bot.tools.orders import order_tools, resolve_customer
from bot.tools.registry import ToolContext, ToolRegistry

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CASES: list[tuple[str, str | None, dict[str, str]]] = [
    ("resolve_customer only", None, {}),
    ("lookup_order, own order", "lookup_order", {"order_id": "QH202503120001"}),
    ("lookup_order, their order", "lookup_order", {"order_id": "QH202503150017"}),
    ("lookup_order, no such order", "lookup_order", {"order_id": "QH209912319999"}),
    ("track_shipment, own order", "track_shipment", {"order_id": "QH202503120001"}),
    ("list_my_orders", "list_my_orders", {}),
]


async def run(calls: int, redis_url: str) -> None:
    folder = Path(tempfile.mkdtemp())
    engine = get_engine(f"sqlite:///{folder / 'bench.db'}")
    import_orders_csv(engine, EXAMPLES / "orders.csv")
    import_shipments_csv(engine, EXAMPLES / "shipments.csv")
    bindings = BindingStore(engine, redis_url)
    bindings.bind("web", "default", "bench-user", "C1001")
    registry = ToolRegistry(order_tools(SqlOrderBackend(engine), bindings))
    msg = InboundMessage(Platform.WEB, "default", "e1", "bench-user", "bench-user", "")
    print(f"{calls} calls per case, SQLite, times in ms")
    for label, tool, arguments in CASES:
        times = []
        for _ in range(calls):
            ctx = ToolContext(message=msg)
            started = time.perf_counter()
            await resolve_customer(bindings, ctx)
            if tool is not None:
                await registry.run(ToolCall("c1", tool, json.dumps(arguments)), ctx)
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        p95 = times[int(len(times) * 0.95)]
        print(f"  {label:<30} median {statistics.median(times):6.2f}   p95 {p95:6.2f}")
    bindings.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.redis))


if __name__ == "__main__":
    main()
