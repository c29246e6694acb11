"""How orders are shown: JSON data for the model, plain text for the no-model path.

The phone number is never shown: only its last two digits, masked ("尾号**21"), since the
last four are the proof of ownership.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.orders.base import Order, ShipmentEvent

_BEIJING = ZoneInfo("Asia/Shanghai")  # times are shown as the customer reads a clock


def mask_phone(last4: str) -> str:
    return f"尾号**{last4[-2:]}" if len(last4) >= 2 else ""


def show_time(value: datetime | None) -> str:
    return value.astimezone(_BEIJING).strftime("%Y-%m-%d %H:%M") if value else ""


def items_text(order: Order) -> str:
    return "；".join(f"{i.name} ×{i.quantity}" for i in order.items)


def order_json(order: Order) -> dict[str, Any]:
    """The order as data for the model (no customer id, the phone masked)."""
    return {
        "order_id": order.order_id,
        "status": order.status,
        "items": [{"name": i.name, "quantity": i.quantity} for i in order.items],
        "amount": f"{order.amount:.2f}" if order.amount is not None else "",
        "currency": "CNY",
        "carrier": order.carrier,
        "tracking_no": order.tracking_no,
        "created_at": show_time(order.created_at),
        "phone": mask_phone(order.phone_last4),
    }


def event_json(event: ShipmentEvent) -> dict[str, str]:
    return {
        "time": show_time(event.at),
        "location": event.location,
        "description": event.description,
    }


def event_text(event: ShipmentEvent) -> str:
    return " ".join(p for p in (show_time(event.at), event.location, event.description) if p)


def order_text(order: Order, events: Sequence[ShipmentEvent] = ()) -> str:
    """A status answer a customer can read on any platform (plain text, one fact a line)."""
    lines = [f"订单 {order.order_id} 的状态：{order.status or '未知'}"]
    if order.items:
        lines.append(f"商品：{items_text(order)}")
    if order.amount is not None:
        lines.append(f"金额：¥{order.amount:.2f}")
    if order.carrier or order.tracking_no:
        shipping = order.carrier
        if order.tracking_no:
            shipping += (
                f"，运单号 {order.tracking_no}" if shipping else f"运单号 {order.tracking_no}"
            )
        lines.append(f"物流：{shipping}")
    if events:
        lines.append(f"最新物流：{event_text(events[0])}")
    return "\n".join(lines)


def orders_text(orders: Sequence[Order]) -> str:
    """A short list of a customer's orders, newest first."""
    lines = ["您最近的订单："]
    lines += [f"{o.order_id}  {o.status or '未知'}  {items_text(o)}".rstrip() for o in orders]
    lines.append("发送订单号可查看详情和物流。")
    return "\n".join(lines)
