"""Order value parsing, the merchant field mapping and the formatting shown to people."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bot.errors import TransientError
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
from bot.orders.bindings import ProofLimitUnavailableError
from bot.orders.format import mask_phone, order_json, order_text, orders_text
from bot.orders.http import OrderMapping, dig
from tests.fakes.merchant_api import FIELD_MAP, MerchantOrder

ORDER = Order(
    order_id="QH202503120001",
    customer_id="C1001",
    status="运输中",
    items=(OrderItem("青禾扫地机器人 R3", 1), OrderItem("R3 边刷", 4)),
    amount=Decimal("1999.00"),
    carrier="中通快递",
    tracking_no="ZT7810023456781",
    created_at=datetime(2025, 3, 12, 2, 24, tzinfo=UTC),
    phone_last4="8321",
)


def test_items_text_is_split_into_names_and_quantities() -> None:
    assert parse_items("青禾扫地机器人 R3 ×1；R3 边刷 ×4; 赠品") == (
        OrderItem("青禾扫地机器人 R3", 1),
        OrderItem("R3 边刷", 4),
        OrderItem("赠品", 1),
    )
    assert parse_items("") == ()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("13812348321", "8321"), ("138-1234-8321", "8321"), ("8321", "8321"), ("321", "")],
)
def test_last4(raw: str, expected: str) -> None:
    assert last4(raw) == expected


def test_amounts_and_times_from_shop_formats() -> None:
    assert parse_amount("1,999.5") == Decimal("1999.50")
    assert parse_amount("¥53") == Decimal("53.00")
    assert parse_amount("abc") is None
    assert parse_amount(True) is None
    assert parse_time(1_742_000_000_000) == datetime.fromtimestamp(1_742_000_000, UTC)
    naive = parse_time("2025-03-12 10:24:05")  # a shop's naive time is Beijing time
    assert naive is not None
    assert naive.astimezone(UTC) == datetime(2025, 3, 12, 2, 24, 5, tzinfo=UTC)
    assert parse_time("not a time") is None


def test_dig_follows_dotted_paths_and_list_indexes() -> None:
    data = {"data": {"list": [{"a": 1}, {"a": 2}]}}
    assert dig(data, "data.list.1.a") == 2
    assert dig(data, "") is data
    assert dig(data, "data.missing.a") is None
    assert dig(data, "data.list.5") is None


def test_the_merchant_field_map_yields_our_order() -> None:
    merchant = MerchantOrder(
        order_no="M-1",
        member_id="V9",
        mobile="13912345678",
        status="已发货",
        lines=[("音箱", 2)],
        total="398.00",
        company="顺丰速运",
        waybill="SF1",
        created_ms=1_742_000_000_000,
    )
    order = OrderMapping(FIELD_MAP).order({"code": 0, "data": merchant.to_json()})
    assert order == Order(
        order_id="M-1",
        customer_id="V9",
        status="已发货",
        items=(OrderItem("音箱", 2),),
        amount=Decimal("398.00"),
        carrier="顺丰速运",
        tracking_no="SF1",
        created_at=datetime.fromtimestamp(1_742_000_000, UTC),
        phone_last4="5678",
    )


def test_mapping_refuses_unknown_keys_and_sorts_events_latest_first() -> None:
    with pytest.raises(ValueError, match="nonsense"):
        OrderMapping({"nonsense": "x"})
    events = OrderMapping(FIELD_MAP).events(
        {"data": {"traces": [{"ts": 1000, "remark": "a"}, {"ts": 3000, "remark": "c"}]}}
    )
    assert [e.description for e in events] == ["c", "a"]


def test_order_json_hides_customer_and_masks_the_phone() -> None:
    data = order_json(ORDER)
    assert "C1001" not in str(data)
    assert "8321" not in str(data)
    assert data["phone"] == mask_phone("8321") == "尾号**21"
    assert data["amount"] == "1999.00"
    assert data["created_at"] == "2025-03-12 10:24"  # Beijing time


def test_order_text_has_status_items_amount_shipping_and_latest_event() -> None:
    event = ShipmentEvent(datetime(2025, 3, 13, 1, 0, tzinfo=UTC), "快件已到达转运中心", "上海市")
    text = order_text(ORDER, [event])
    assert text.splitlines() == [
        "订单 QH202503120001 的状态：运输中",
        "商品：青禾扫地机器人 R3 ×1；R3 边刷 ×4",
        "金额：¥1999.00",
        "物流：中通快递，运单号 ZT7810023456781",
        "最新物流：2025-03-13 09:00 上海市 快件已到达转运中心",
    ]
    assert "8321" not in text
    assert "QH202503120001  运输中" in orders_text([ORDER])


@pytest.mark.parametrize("cls", [OrderBackendError, ProofLimitUnavailableError])
def test_order_errors_are_transient_and_pickle(cls: type[OrderBackendError]) -> None:
    exc = cls("order API answered with an error", "orders", status=503)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls
    assert isinstance(back, TransientError)
    assert (back.reason, back.platform, back.status) == (exc.reason, "orders", 503)
