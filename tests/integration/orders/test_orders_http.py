"""The HTTP order backend against a fake merchant API on loopback (real sockets)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot import wiring
from bot.domain import Platform
from bot.orders.base import OrderBackendError
from bot.orders.bindings import BindingStore
from bot.orders.http import HttpOrderBackend, HttpOrderConfig
from bot.settings import Settings
from bot.tools.orders import NOT_FOUND, UNAVAILABLE, order_tools, resolve_customer
from bot.tools.registry import ToolRegistry
from tests.fakes.base import serve
from tests.fakes.merchant_api import FIELD_MAP, MerchantFakeState, MerchantOrder, merchant_app
from tests.integration.orders_fixtures import call, context, fresh_engine

PATHS = {
    "order_path": "/open/v2/orders/{order_id}",
    "list_path": "/open/v2/members/{customer_id}/orders",
    "shipment_path": "/open/v2/orders/{order_id}/traces",
}
MINE = MerchantOrder(
    "SO-1001",
    "V1",
    "13800138000",
    "已发货",
    [("青禾扫地机器人 R3", 1), ("R3 边刷", 2)],
    "2,019.00",
    "顺丰速运",
    "SF100",
    traces=[(1_742_000_000_000, "苏州", "已揽收"), (1_742_090_000_000, "上海", "运输中")],
)
THEIRS = MerchantOrder("SO-2002", "V2", "13900139999", "待发货", [("音箱", 1)], "199.00")


@dataclass
class Merchant:
    state: MerchantFakeState
    url: str

    def backend(self, timeout_s: float = 2.0, token: str | None = None) -> HttpOrderBackend:
        return HttpOrderBackend(
            HttpOrderConfig(
                base_url=self.url + "/",
                auth_header=("X-Api-Key", token or self.state.token),
                field_map=FIELD_MAP,
                timeout_s=timeout_s,
                **PATHS,
            )
        )


@pytest.fixture
def merchant() -> Iterator[Merchant]:
    state = MerchantFakeState(token="k-123")
    state.add(MINE)
    state.add(THEIRS)
    with serve(merchant_app(state)) as url:
        yield Merchant(state, url)


async def test_an_order_is_mapped_from_their_fields(merchant: Merchant) -> None:
    order = await merchant.backend().get("SO-1001")
    assert order is not None
    assert (order.customer_id, order.status, order.phone_last4) == ("V1", "已发货", "8000")
    assert [(i.name, i.quantity) for i in order.items] == [("青禾扫地机器人 R3", 1), ("R3 边刷", 2)]
    assert str(order.amount) == "2019.00"
    assert (order.carrier, order.tracking_no) == ("顺丰速运", "SF100")
    (request,) = merchant.state.requests
    assert request.path == "/open/v2/orders/SO-1001"
    assert request.headers["x-api-key"] == "k-123"


async def test_list_and_shipment(merchant: Merchant) -> None:
    backend = merchant.backend()
    assert [o.order_id for o in await backend.list_for_customer("V1")] == ["SO-1001"]
    assert await backend.list_for_customer("V404") == []
    events = await backend.shipment("SO-1001")
    assert [e.description for e in events] == ["运输中", "已揽收"]
    assert events[0].at == datetime.fromtimestamp(1_742_090_000, UTC)
    assert events[0].location == "上海"
    assert await backend.shipment("SO-404") == []


async def test_404_is_no_such_order(merchant: Merchant) -> None:
    assert await merchant.backend().get("SO-404") is None


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_backend_errors(merchant: Merchant, status: int) -> None:
    merchant.state.fail_next(status=status)
    with pytest.raises(OrderBackendError) as info:
        await merchant.backend().get("SO-1001")
    assert info.value.status == status


async def test_a_wrong_key_is_a_backend_error(merchant: Merchant) -> None:
    with pytest.raises(OrderBackendError) as info:
        await merchant.backend(token="wrong").get("SO-1001")
    assert info.value.status == 401


async def test_a_slow_api_times_out(merchant: Merchant) -> None:
    merchant.state.fail_next(status=200, delay_s=2.0)
    started = time.monotonic()
    with pytest.raises(OrderBackendError, match=r"did not answer within 0\.3 s"):
        await merchant.backend(timeout_s=0.3).get("SO-1001")
    assert time.monotonic() - started < 1.5


async def test_invalid_json_is_a_backend_error(merchant: Merchant) -> None:
    merchant.state.fail_next(status=200, body="<html>502 Bad Gateway</html>")
    with pytest.raises(OrderBackendError, match="invalid JSON"):
        await merchant.backend().get("SO-1001")


@pytest.fixture
def http_settings(
    merchant: Merchant, make_settings: Callable[..., Settings], tmp_path: Path
) -> Settings:
    return make_settings(
        core={"database_url": f"sqlite:///{tmp_path / 'bind.db'}"},
        orders={
            "backend": "http",
            "http_base_url": merchant.url,
            "http_auth_header": "X-Api-Key: k-123",
            "http_field_map": FIELD_MAP,
            "http_timeout_s": 1,
            **{f"http_{k}": v for k, v in PATHS.items()},
        },
    )


async def test_tools_over_the_configured_http_backend(
    merchant: Merchant, http_settings: Settings
) -> None:
    engine = fresh_engine(http_settings.core.effective_database_url())
    backend = wiring.order_backend(http_settings, engine)
    assert isinstance(backend, HttpOrderBackend)
    bindings = wiring.binding_store(http_settings, engine)
    assert isinstance(bindings, BindingStore)
    bindings.bind("feishu", "default", "ou_a", "V1")
    registry = ToolRegistry(order_tools(backend, bindings))
    ctx = context("ou_a", platform=Platform.FEISHU)
    await resolve_customer(bindings, ctx)
    _, mine = await call(registry, ctx, "lookup_order", order_id="SO-1001")
    assert mine["order"]["amount"] == "2019.00"
    _, theirs = await call(registry, ctx, "lookup_order", order_id="SO-2002")
    _, missing = await call(registry, ctx, "lookup_order", order_id="SO-404")
    assert theirs == missing
    assert theirs["message"] == NOT_FOUND
    assert "V2" not in str(theirs)
    assert "音箱" not in str(theirs)
    _, listed = await call(registry, ctx, "list_my_orders")
    assert [o["order_id"] for o in listed["orders"]] == ["SO-1001"]
    merchant.state.fail_next(status=500)
    ok, down = await call(registry, ctx, "track_shipment", order_id="SO-1001")
    assert not ok
    assert down == {"error": "tool_error", "message": UNAVAILABLE}
