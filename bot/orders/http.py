"""The HTTP order backend: the merchant's own order API, mapped onto our field names.

Configuration says where the three answers live (paths with ``{order_id}`` and
``{customer_id}``), how to authenticate (one header), and where each of our fields sits in
their JSON (dotted paths, e.g. ``"amount": "payment.total"``). A 404 is "no such order",
anything else that is not a 2xx, a timeout or unreadable JSON is `OrderBackendError`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

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

log = logging.getLogger(__name__)

# Our field -> their dotted path. "order"/"orders"/"events" locate the object or list in
# each response ("" = the whole body); item_* and event_* are relative to one item/event.
DEFAULT_FIELD_MAP: dict[str, str] = {
    "order": "",
    "orders": "",
    "events": "",
    "order_id": "order_id",
    "customer_id": "customer_id",
    "phone": "phone",
    "status": "status",
    "items": "items",
    "item_name": "name",
    "item_quantity": "quantity",
    "amount": "amount",
    "carrier": "carrier",
    "tracking_no": "tracking_no",
    "created_at": "created_at",
    "event_time": "time",
    "event_description": "description",
    "event_location": "location",
}

_MISSING = object()


def dig(data: Any, path: str) -> Any:
    """The value at a dotted path ("data.items.0.name"); "" is `data` itself; None if absent."""
    if not path:
        return data
    current = data
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part, _MISSING)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
        if current is _MISSING:
            return None
    return current


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


@dataclass(frozen=True, slots=True)
class HttpOrderConfig:
    base_url: str
    order_path: str = "/orders/{order_id}"
    list_path: str = "/customers/{customer_id}/orders"
    shipment_path: str = "/orders/{order_id}/shipments"
    auth_header: tuple[str, str] | None = None  # (name, value)
    field_map: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 5.0


class OrderMapping:
    """Turns the merchant's JSON into our `Order` and `ShipmentEvent` values."""

    def __init__(self, field_map: Mapping[str, str]) -> None:
        unknown = sorted(set(field_map) - set(DEFAULT_FIELD_MAP))
        if unknown:
            raise ValueError(f"unknown field map keys: {', '.join(unknown)}")
        self._map = {**DEFAULT_FIELD_MAP, **field_map}

    def order(self, data: Any) -> Order | None:
        """The order in a single-order response, or None when its shape is not an order."""
        obj = dig(data, self._map["order"])
        return self._order(obj) if isinstance(obj, Mapping) else None

    def orders(self, data: Any) -> list[Order]:
        found = dig(data, self._map["orders"])
        if not isinstance(found, list):
            raise OrderBackendError("order list response is not a list", "orders")
        return [o for o in (self._order(x) for x in found if isinstance(x, Mapping)) if o]

    def events(self, data: Any) -> list[ShipmentEvent]:
        found = dig(data, self._map["events"])
        if not isinstance(found, list):
            raise OrderBackendError("shipment response is not a list", "orders")
        events = [
            ShipmentEvent(
                at=parse_time(dig(e, self._map["event_time"])),
                description=_text(dig(e, self._map["event_description"])),
                location=_text(dig(e, self._map["event_location"])),
            )
            for e in found
            if isinstance(e, Mapping)
        ]
        # Latest first, whatever order the merchant lists them in; undated ones last.
        return sorted(
            events, key=lambda e: e.at.timestamp() if e.at else float("-inf"), reverse=True
        )

    def _order(self, obj: Mapping[str, Any]) -> Order | None:
        order_id = _text(dig(obj, self._map["order_id"]))
        if not order_id:
            return None
        return Order(
            order_id=order_id,
            customer_id=_text(dig(obj, self._map["customer_id"])),
            status=_text(dig(obj, self._map["status"])),
            items=self._items(dig(obj, self._map["items"])),
            amount=parse_amount(dig(obj, self._map["amount"])),
            carrier=_text(dig(obj, self._map["carrier"])),
            tracking_no=_text(dig(obj, self._map["tracking_no"])),
            created_at=parse_time(dig(obj, self._map["created_at"])),
            phone_last4=last4(_text(dig(obj, self._map["phone"]))),
        )

    def _items(self, value: Any) -> tuple[OrderItem, ...]:
        if isinstance(value, str):
            return parse_items(value)
        if not isinstance(value, list):
            return ()
        items = []
        for raw in value:
            if isinstance(raw, Mapping):
                name = _text(dig(raw, self._map["item_name"]))
                try:
                    quantity = int(dig(raw, self._map["item_quantity"]) or 1)
                except (TypeError, ValueError):
                    quantity = 1
                if name:
                    items.append(OrderItem(name, quantity))
            elif isinstance(raw, str) and raw.strip():
                items.extend(parse_items(raw))
        return tuple(items)


class HttpOrderBackend:
    """Orders from the merchant's API; one short-lived session per call (any event loop)."""

    def __init__(self, config: HttpOrderConfig) -> None:
        self._config = config
        self._mapping = OrderMapping(config.field_map)

    async def get(self, order_id: str) -> Order | None:
        data = await self._fetch(self._config.order_path, order_id=order_id)
        if data is None:
            return None
        order = self._mapping.order(data)
        if order is not None and order.order_id != order_id:
            # Never show an order under another order's number, whatever the API answered.
            log.warning("order API answered a different order than asked for")
            return None
        return order

    async def list_for_customer(self, customer_id: str, limit: int = 10) -> list[Order]:
        data = await self._fetch(self._config.list_path, customer_id=customer_id)
        if data is None:
            return []
        # Their list is filtered by the customer in the URL; keep only what is truly theirs.
        orders = [o for o in self._mapping.orders(data) if o.customer_id == customer_id]
        return orders[:limit]

    async def shipment(self, order_id: str) -> list[ShipmentEvent]:
        data = await self._fetch(self._config.shipment_path, order_id=order_id)
        return [] if data is None else self._mapping.events(data)

    async def _fetch(self, template: str, **values: str) -> Any:
        """GET one path; None on 404, `OrderBackendError` on any other failure."""
        # Quoted with safe="": an id like "../admin" stays one path segment.
        path = template.format(**{k: quote(v, safe="") for k, v in values.items()})
        url = self._config.base_url.rstrip("/") + "/" + path.lstrip("/")
        headers = {"Accept": "application/json"}
        if self._config.auth_header is not None:
            headers[self._config.auth_header[0]] = self._config.auth_header[1]
        timeout = aiohttp.ClientTimeout(total=self._config.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.get(url, headers=headers) as resp,
            ):
                if resp.status == 404:
                    return None
                body = await resp.read()
                if resp.status >= 300:
                    raise OrderBackendError(
                        "order API answered with an error", "orders", status=resp.status
                    )
        except TimeoutError as exc:
            raise OrderBackendError(
                f"order API did not answer within {self._config.timeout_s:g} s", "orders"
            ) from exc
        except aiohttp.ClientError as exc:
            raise OrderBackendError(
                f"order API unreachable: {type(exc).__name__}", "orders"
            ) from exc
        try:
            return json.loads(body)
        except ValueError as exc:
            raise OrderBackendError("order API answered with invalid JSON", "orders") from exc
