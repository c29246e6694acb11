"""A fake merchant order API, with its own field names, to test the HTTP order backend.

It answers like a typical shop system: ``{"code": 0, "data": {...}}`` with camelCase
fields, nested buyer/payment/logistics objects, amounts as strings and times in epoch
milliseconds. The matching field map is `FIELD_MAP`. From a test:

    state = MerchantFakeState(token="secret")
    state.add(order)                          # a MerchantOrder
    state.fail_next(status=500)               # the next call is a 500 (FakeState)
    state.fail_next(status=200, delay_s=3)    # the next call is slow
    state.fail_next(status=200, body="<html>")  # the next call is not JSON
    with serve(merchant_app(state)) as url: ...

Unknown orders are a 404; a missing or wrong ``X-Api-Key`` is a 401.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeState, record

FIELD_MAP = {
    "order": "data",
    "orders": "data.list",
    "events": "data.traces",
    "order_id": "orderNo",
    "customer_id": "buyer.memberId",
    "phone": "buyer.mobile",
    "status": "statusText",
    "items": "lines",
    "item_name": "title",
    "item_quantity": "qty",
    "amount": "payment.total",
    "carrier": "logistics.company",
    "tracking_no": "logistics.waybillNo",
    "created_at": "createdAt",
    "event_time": "ts",
    "event_description": "remark",
    "event_location": "city",
}


@dataclass
class MerchantOrder:
    order_no: str
    member_id: str
    mobile: str
    status: str
    lines: list[tuple[str, int]]
    total: str
    company: str = ""
    waybill: str = ""
    created_ms: int = 1_742_000_000_000
    traces: list[tuple[int, str, str]] = field(default_factory=list)  # (ms, city, remark)

    def to_json(self) -> dict[str, Any]:
        return {
            "orderNo": self.order_no,
            "buyer": {"memberId": self.member_id, "mobile": self.mobile},
            "statusText": self.status,
            "lines": [{"title": t, "qty": q} for t, q in self.lines],
            "payment": {"total": self.total},
            "logistics": {"company": self.company, "waybillNo": self.waybill},
            "createdAt": self.created_ms,
        }


@dataclass
class MerchantFakeState(FakeState):
    token: str = "merchant-key"
    orders: dict[str, MerchantOrder] = field(default_factory=dict)

    def add(self, order: MerchantOrder) -> None:
        self.orders[order.order_no] = order


def merchant_app(state: MerchantFakeState) -> web.Application:
    async def guard(request: web.Request) -> web.Response | None:
        await record(state, request)
        failure = state.take_failure()
        if failure is not None:
            if failure.delay_s:
                await asyncio.sleep(failure.delay_s)
            if isinstance(failure.body, str):  # a broken gateway's HTML, say
                return web.Response(text=failure.body, status=failure.status)
            if failure.status != 200:
                return web.json_response(
                    failure.body or {"code": 500, "msg": "internal error"}, status=failure.status
                )
        if request.headers.get("X-Api-Key") != state.token:
            return web.json_response({"code": 401, "msg": "bad api key"}, status=401)
        return None

    async def order(request: web.Request) -> web.Response:
        if (refused := await guard(request)) is not None:
            return refused
        found = state.orders.get(request.match_info["order_no"])
        if found is None:
            return web.json_response({"code": 404, "msg": "order not found"}, status=404)
        return web.json_response({"code": 0, "data": found.to_json()})

    async def member_orders(request: web.Request) -> web.Response:
        if (refused := await guard(request)) is not None:
            return refused
        member = request.match_info["member_id"]
        found = [o.to_json() for o in state.orders.values() if o.member_id == member]
        return web.json_response({"code": 0, "data": {"list": found, "total": len(found)}})

    async def traces(request: web.Request) -> web.Response:
        if (refused := await guard(request)) is not None:
            return refused
        found = state.orders.get(request.match_info["order_no"])
        if found is None:
            return web.json_response({"code": 404, "msg": "order not found"}, status=404)
        traces = [{"ts": ts, "city": city, "remark": remark} for ts, city, remark in found.traces]
        return web.json_response({"code": 0, "data": {"traces": traces}})

    app = web.Application()
    app.router.add_get("/open/v2/orders/{order_no}", order)
    app.router.add_get("/open/v2/members/{member_id}/orders", member_orders)
    app.router.add_get("/open/v2/orders/{order_no}/traces", traces)
    return app
