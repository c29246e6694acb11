"""The SQL order backend and the binding store on real SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from bot.orders.bindings import BindingImportError, BindingSource, BindingStore
from bot.orders.sql import SqlOrderBackend, import_orders_csv, load_sample_if_empty
from tests.integration.orders_fixtures import EXAMPLES, fresh_engine, load_demo


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'orders.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    return fresh_engine(url)


async def test_demo_orders_are_read_back_exactly(engine: Engine) -> None:
    load_demo(engine)
    backend = SqlOrderBackend(engine)
    order = await backend.get("QH202503200008")
    assert order is not None
    assert order.customer_id == "C1002"
    assert order.phone_last4 == "4406"
    assert order.status == "运输中"
    assert [(i.name, i.quantity) for i in order.items] == [("R3 可水洗滤网", 2), ("R3 边刷", 4)]
    assert str(order.amount) == "94.00"
    assert order.created_at is not None
    assert order.created_at.isoformat() == "2025-03-20T12:13:58+00:00"
    assert await backend.get("QH209912319999") is None


async def test_a_customer_list_is_theirs_newest_first(engine: Engine) -> None:
    load_demo(engine)
    backend = SqlOrderBackend(engine)
    orders = await backend.list_for_customer("C1001")
    assert [o.order_id for o in orders] == ["QH202503240026", "QH202503210055", "QH202503120001"]
    assert [o.order_id for o in await backend.list_for_customer("C1001", limit=1)] == [
        "QH202503240026"
    ]
    assert await backend.list_for_customer("C9999") == []


async def test_shipment_events_latest_first(engine: Engine) -> None:
    load_demo(engine)
    events = await SqlOrderBackend(engine).shipment("QH202503120001")
    assert len(events) == 4
    assert events[0].description == "【上海市】快件已签收，签收人：本人"
    assert events[-1].location == "苏州市"
    assert await SqlOrderBackend(engine).shipment("QH202503210055") == []


async def test_imports_are_idempotent_upserts(engine: Engine, tmp_path: Path) -> None:
    assert import_orders_csv(engine, EXAMPLES / "orders.csv") == (12, 0)
    assert import_orders_csv(engine, EXAMPLES / "orders.csv") == (0, 12)
    changed = tmp_path / "changed.csv"
    changed.write_text(
        "order_id,customer_id,phone,status,items,amount\n"
        "QH202503120001,C1001,13800008321,已退款,青禾扫地机器人 R3 ×1,1999\n",
        encoding="utf-8",
    )
    assert import_orders_csv(engine, changed) == (0, 1)
    order = await SqlOrderBackend(engine).get("QH202503120001")
    assert order is not None
    assert (order.status, order.phone_last4) == ("已退款", "8321")
    assert len(await SqlOrderBackend(engine).list_for_customer("C1001")) == 3


def test_the_sample_loads_once(engine: Engine) -> None:
    summary = load_sample_if_empty(engine, EXAMPLES / "orders.csv")
    assert summary is not None
    assert "12 demo orders and 21 logistics events" in summary
    assert load_sample_if_empty(engine, EXAMPLES / "orders.csv") is None


def test_bind_get_list_unbind(engine: Engine) -> None:
    store = BindingStore(engine)
    assert store.get("wecom", "default", "zhangsan") is None
    store.bind("wecom", "default", "zhangsan", "C1001")
    store.bind("feishu", "default", "ou_1", "C1002", BindingSource.PROOF)
    got = store.get("wecom", "default", "zhangsan")
    assert got is not None
    assert (got.customer_id, got.source) == ("C1001", "admin")
    # Binding again replaces: one user is one customer.
    store.bind("wecom", "default", "zhangsan", "C1003")
    assert [b.customer_id for b in store.list(platform="wecom")] == ["C1003"]
    assert {b.user_id for b in store.list()} == {"zhangsan", "ou_1"}
    assert [b.user_id for b in store.list(customer_id="C1002")] == ["ou_1"]
    assert store.unbind("wecom", "default", "zhangsan") is True
    assert store.unbind("wecom", "default", "zhangsan") is False
    assert store.get("wecom", "default", "zhangsan") is None


def test_bad_bindings_are_refused(engine: Engine) -> None:
    store = BindingStore(engine)
    with pytest.raises(ValueError, match="unknown platform"):
        store.bind("msn", "default", "u", "C1")
    with pytest.raises(ValueError, match="customer_id is required"):
        store.bind("web", "default", "u", " ")


def test_csv_import_checks_every_row_before_writing(engine: Engine) -> None:
    store = BindingStore(engine)
    good = "platform,app,user_id,customer_id\nwecom,,lisi,C1001\ndingtalk,default,staff9,C1002\n"
    assert store.import_csv(good) == 2
    lisi = store.get("wecom", "default", "lisi")
    assert lisi is not None
    assert lisi.source == "import"
    bad = "platform,app,user_id,customer_id\nwecom,,wangwu,C1003\nmsn,,x,C1\n"
    with pytest.raises(BindingImportError, match="line 3: unknown platform"):
        store.import_csv(bad)
    assert store.get("wecom", "default", "wangwu") is None
    with pytest.raises(BindingImportError, match="missing columns: customer_id"):
        store.import_csv("platform,user_id\nwecom,x\n")
