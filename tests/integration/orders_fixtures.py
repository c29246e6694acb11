"""Shared helpers for the order tests: demo data in a real database, users, tool calls."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.db.engine import get_engine
from bot.domain import InboundMessage, Platform
from bot.llm.base import ToolCall
from bot.orders.bindings import BindingStore, CustomerBinding
from bot.orders.sql import (
    CustomerOrder,
    ShipmentEventRow,
    ensure_tables,
    import_orders_csv,
    import_shipments_csv,
)
from bot.tools.registry import ToolContext, ToolRegistry

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Demo customers (examples/orders.csv): C1001 owns ...0001 (phone 8321), C1002 ...0017 (4406).
A_ORDER, A_PHONE, A_CUSTOMER = "QH202503120001", "8321", "C1001"
B_ORDER, B_PHONE, B_CUSTOMER = "QH202503150017", "4406", "C1002"
MISSING_ORDER = "QH209912319999"


def fresh_engine(url: str) -> Engine:
    """`url`'s engine with empty order and binding tables."""
    engine = get_engine(url)
    ensure_tables(engine)
    BindingStore(engine)  # creates its table
    with Session(engine) as session:
        for model in (ShipmentEventRow, CustomerOrder, CustomerBinding):
            session.exec(delete(model))  # type: ignore[call-overload]
        session.commit()
    return engine


def load_demo(engine: Engine) -> None:
    import_orders_csv(engine, EXAMPLES / "orders.csv")
    import_shipments_csv(engine, EXAMPLES / "shipments.csv")


def context(user: str, platform: Platform = Platform.WEB, text: str = "") -> ToolContext:
    msg = InboundMessage(
        platform=platform,
        app="default",
        event_id=uuid.uuid4().hex,
        conversation_id=user,
        sender_id=user,
        text=text,
    )
    return ToolContext(message=msg)


async def call(
    registry: ToolRegistry, ctx: ToolContext, name: str, **arguments: Any
) -> tuple[bool, Any]:
    """Run one tool call as the loop would: (ok, the JSON the model reads)."""
    call = ToolCall(uuid.uuid4().hex, name, json.dumps(arguments, ensure_ascii=False))
    result = await registry.run(call, ctx)
    return result.ok, json.loads(result.content)
