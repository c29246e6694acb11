"""Order value types and the backend Protocol every order source implements.

A backend answers three questions and nothing more: one order by number, a customer's
recent orders, an order's logistics events. Who may see what is decided by the order
tools (`bot/tools/orders.py`), never by a backend.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.errors import TransientError

# "青禾扫地机器人 R3 ×1；R3 边刷 ×4": the demo data's (and many shops' export) item text.
_ITEM_SPLIT = re.compile(r"[；;\n]")
_ITEM_QTY = re.compile(r"^(?P<name>.*?)\s*[×xX*]\s*(?P<qty>\d{1,6})$")
_BEIJING = ZoneInfo("Asia/Shanghai")


# Order numbers in a customer's message: the demo's "QH" + 12 digits (ORDERS_ID_PATTERN).
DEFAULT_ORDER_ID_PATTERN = r"(?<![A-Za-z0-9])QH\d{12}(?!\d)"


class OrderBackendError(TransientError):
    """The order source is unreachable, too slow or failing (5xx); worth retrying later."""


@dataclass(frozen=True, slots=True)
class OrderItem:
    name: str
    quantity: int = 1


@dataclass(frozen=True, slots=True)
class ShipmentEvent:
    """One logistics event (a scan, a hand-over, the delivery)."""

    at: datetime | None
    description: str
    location: str = ""


@dataclass(frozen=True, slots=True)
class Order:
    """One order as the bot sees it, whatever the source's own field names are."""

    order_id: str
    customer_id: str
    status: str
    items: tuple[OrderItem, ...] = ()
    amount: Decimal | None = None
    carrier: str = ""
    tracking_no: str = ""
    created_at: datetime | None = None
    phone_last4: str = ""  # proof of ownership; never shown in full


class OrderBackend(Protocol):
    """Where orders come from; every method raises `OrderBackendError` when unavailable."""

    async def get(self, order_id: str) -> Order | None: ...

    async def list_for_customer(self, customer_id: str, limit: int = 10) -> list[Order]: ...

    async def shipment(self, order_id: str) -> list[ShipmentEvent]: ...


def parse_items(text: str) -> tuple[OrderItem, ...]:
    """Items from "名称 ×数量；名称 ×数量" text; a part without a quantity counts once."""
    items = []
    for part in _ITEM_SPLIT.split(text):
        part = part.strip()
        if not part:
            continue
        match = _ITEM_QTY.match(part)
        if match:
            items.append(OrderItem(match["name"].strip(), int(match["qty"])))
        else:
            items.append(OrderItem(part, 1))
    return tuple(items)


def last4(phone: str) -> str:
    """The last four digits of a phone number (or of "8321" itself); "" when too short."""
    digits = "".join(c for c in phone if c.isdigit())
    return digits[-4:] if len(digits) >= 4 else ""


def parse_amount(value: object) -> Decimal | None:
    """A money amount from a number or a "1,999.00"/"¥1999" string; None when unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    text = str(value).replace(",", "").replace("¥", "").replace("￥", "").strip()
    try:
        return Decimal(text).quantize(Decimal("0.01"))
    except ArithmeticError:
        return None


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time or a Unix timestamp (seconds or milliseconds); None when unreadable."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 10**11 else value
        return datetime.fromtimestamp(seconds, UTC)
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    # A naive time from a Chinese shop system is Beijing time.
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_BEIJING)
    return parsed
