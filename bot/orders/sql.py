"""The SQL order backend: orders and logistics events in our own database (SQLite or PG).

`bot up` fills these tables from `examples/orders.csv` and `examples/shipments.csv`; a
shop without an order API can keep them current with the same idempotent CSV imports.
"""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Column, DateTime, Text, delete
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, col, select

from bot.orders.base import (
    Order,
    OrderBackendError,
    OrderItem,
    ShipmentEvent,
    last4,
    parse_amount,
    parse_items,
    parse_time,
)

T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


class CustomerOrder(SQLModel, table=True):
    """One order of one customer account; `items` is a JSON list of {name, quantity}."""

    __tablename__ = "customer_order"

    order_id: str = Field(primary_key=True, max_length=64)
    customer_id: str = Field(index=True, max_length=64)
    phone_last4: str = Field(default="", max_length=4)
    status: str = Field(default="", max_length=32)
    items: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    amount: str = Field(default="", max_length=32)  # decimal text: exact on every database
    carrier: str = Field(default="", max_length=64)
    tracking_no: str = Field(default="", max_length=64)
    created_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), index=True)
    )
    updated_at: datetime = Field(default_factory=_now)


class ShipmentEventRow(SQLModel, table=True):
    """One logistics event of one order."""

    __tablename__ = "shipment_event"

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(index=True, max_length=64)
    at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    location: str = Field(default="", max_length=128)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


def ensure_tables(engine: Engine) -> None:
    """Create the order tables on `engine` when missing (cheap: it checks first)."""
    tables = [SQLModel.metadata.tables[n] for n in ("customer_order", "shipment_event")]
    SQLModel.metadata.create_all(engine, tables=tables)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite drops the zone: everything is stored in UTC and read back as UTC.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def to_order(row: CustomerOrder) -> Order:
    items = tuple(
        OrderItem(str(i.get("name", "")), int(i.get("quantity", 1))) for i in json.loads(row.items)
    )
    return Order(
        order_id=row.order_id,
        customer_id=row.customer_id,
        status=row.status,
        items=items,
        amount=parse_amount(row.amount),
        carrier=row.carrier,
        tracking_no=row.tracking_no,
        created_at=_utc(row.created_at),
        phone_last4=row.phone_last4,
    )


class SqlOrderBackend:
    """Orders from our database; the blocking queries run in a thread."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        ensure_tables(engine)

    async def _run(self, query: Callable[[Session], T]) -> T:
        def work() -> T:
            with Session(self._engine) as session:
                return query(session)

        try:
            return await asyncio.to_thread(work)
        except SQLAlchemyError as exc:
            raise OrderBackendError(f"order database unavailable: {type(exc).__name__}") from exc

    async def get(self, order_id: str) -> Order | None:
        def query(session: Session) -> Order | None:
            row = session.get(CustomerOrder, order_id)
            return to_order(row) if row is not None else None

        return await self._run(query)

    async def list_for_customer(self, customer_id: str, limit: int = 10) -> list[Order]:
        def query(session: Session) -> list[Order]:
            rows = session.exec(
                select(CustomerOrder)
                .where(CustomerOrder.customer_id == customer_id)
                .order_by(col(CustomerOrder.created_at).desc(), col(CustomerOrder.order_id))
                .limit(limit)
            )
            return [to_order(r) for r in rows]

        return await self._run(query)

    async def shipment(self, order_id: str) -> list[ShipmentEvent]:
        def query(session: Session) -> list[ShipmentEvent]:
            rows = session.exec(
                select(ShipmentEventRow)
                .where(ShipmentEventRow.order_id == order_id)
                .order_by(col(ShipmentEventRow.at).desc(), col(ShipmentEventRow.id).desc())
            )
            return [ShipmentEvent(_utc(r.at), r.description, r.location) for r in rows]

        return await self._run(query)


class CsvImportError(ValueError):
    """A CSV file that cannot be imported; the message names the file, line and column."""


def _rows(path: Path, required: Iterable[str]) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or ())
        missing = [c for c in required if c not in columns]
        if missing:
            raise CsvImportError(f"{path.name}: missing columns: {', '.join(missing)}")
        return [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]


def _phone_column(row: dict[str, str]) -> str:
    for name in ("phone_last4", "customer_phone_last4", "phone"):
        if row.get(name):
            return last4(row[name])
    return ""


def import_orders_csv(engine: Engine, path: Path) -> tuple[int, int]:
    """Insert or update every order of `path` (keyed by order_id): (added, updated).

    Columns: order_id, customer_id, phone_last4 (or customer_phone_last4 / phone), status,
    items ("名称 ×数量；…"), amount, carrier, tracking_no, created_at (ISO 8601).
    """
    ensure_tables(engine)
    rows = _rows(path, ("order_id", "customer_id", "status"))
    added = updated = 0
    with Session(engine) as session:
        for line, raw in enumerate(rows, start=2):
            if not raw.get("order_id") or not raw.get("customer_id"):
                raise CsvImportError(f"{path.name}:{line}: order_id and customer_id are required")
            values: dict[str, Any] = {
                "customer_id": raw["customer_id"],
                "phone_last4": _phone_column(raw),
                "status": raw.get("status", ""),
                "items": json.dumps(
                    [
                        {"name": i.name, "quantity": i.quantity}
                        for i in parse_items(raw.get("items", ""))
                    ],
                    ensure_ascii=False,
                ),
                "amount": str(parse_amount(raw.get("amount")) or ""),
                "carrier": raw.get("carrier", ""),
                "tracking_no": raw.get("tracking_no", ""),
                "created_at": _utc(parse_time(raw.get("created_at"))),
                "updated_at": _now(),
            }
            row = session.get(CustomerOrder, raw["order_id"])
            if row is None:
                session.add(CustomerOrder(order_id=raw["order_id"], **values))
                added += 1
            else:
                for name, value in values.items():
                    setattr(row, name, value)
                session.add(row)
                updated += 1
        session.commit()
    return added, updated


def import_shipments_csv(engine: Engine, path: Path) -> int:
    """Replace the events of every order named in `path` by the file's: the events stored.

    Columns: order_id, time (ISO 8601), location, description.
    """
    ensure_tables(engine)
    rows = _rows(path, ("order_id", "time", "description"))
    with Session(engine) as session:
        orders = {r["order_id"] for r in rows if r.get("order_id")}
        if orders:
            session.exec(delete(ShipmentEventRow).where(col(ShipmentEventRow.order_id).in_(orders)))  # type: ignore[call-overload]
        for line, raw in enumerate(rows, start=2):
            if not raw.get("order_id"):
                raise CsvImportError(f"{path.name}:{line}: order_id is required")
            session.add(
                ShipmentEventRow(
                    order_id=raw["order_id"],
                    at=_utc(parse_time(raw.get("time"))),
                    location=raw.get("location", ""),
                    description=raw.get("description", ""),
                )
            )
        session.commit()
    return len(rows)


def load_sample_if_empty(engine: Engine, orders_csv: Path) -> str | None:
    """Import the demo orders (and `shipments.csv` beside them) into empty order tables.

    Returns a one-line summary to print, or None when there was nothing to do.
    """
    if not orders_csv.is_file():
        return None
    ensure_tables(engine)
    with Session(engine) as session:
        if session.exec(select(CustomerOrder.order_id).limit(1)).first() is not None:
            return None
    added, _ = import_orders_csv(engine, orders_csv)
    shipments = orders_csv.with_name("shipments.csv")
    events = import_shipments_csv(engine, shipments) if shipments.is_file() else 0
    return f"Orders: loaded {added} demo orders and {events} logistics events from {orders_csv}"
