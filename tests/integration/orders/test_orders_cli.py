"""`bot orders import` and `bot bindings import|list` as an operator runs them (SQLite file)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlmodel import Session, select

from bot.db.engine import get_engine
from bot.orders.bindings import CustomerBinding
from bot.orders.sql import CustomerOrder, ShipmentEventRow
from tests.integration.conftest import REPO
from tests.integration.orders_fixtures import EXAMPLES

Run = Callable[..., tuple[int, str]]


@pytest.fixture
def bot(tmp_path: Path) -> Run:
    """Run `python -m bot.cli ARGS…` with DATABASE_URL at a fresh SQLite file."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ORDERS_", "BOT_", "REDIS_", "DATABASE_"))
    }
    env = {
        **keep,
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": f"sqlite:///{tmp_path}/orders.db",
        "COLUMNS": "200",  # rich wraps tables to the terminal width; keep rows on one line
    }

    def run(*args: str) -> tuple[int, str]:
        proc = subprocess.run(
            [sys.executable, "-m", "bot.cli", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return proc.returncode, proc.stdout + proc.stderr

    return run


def _db(tmp_path: Path) -> Session:
    return Session(get_engine(f"sqlite:///{tmp_path}/orders.db"))


def _demo_counts() -> tuple[int, int]:
    lines = [len(p.read_text(encoding="utf-8").strip().splitlines()) - 1 for p in _demo()]
    return lines[0], lines[1]


def _demo() -> tuple[Path, Path]:
    return EXAMPLES / "orders.csv", EXAMPLES / "shipments.csv"


def test_import_the_demo_orders_then_again_as_updates(bot: Run, tmp_path: Path) -> None:
    orders, shipments = _demo()
    n_orders, n_events = _demo_counts()
    code, out = bot("orders", "import", str(orders), "--shipments", str(shipments))
    assert code == 0, out
    assert f"Orders: {n_orders} added, 0 updated; {n_events} logistics events" in out
    code, out = bot("orders", "import", str(orders))
    assert code == 0, out
    assert f"Orders: 0 added, {n_orders} updated" in out
    with _db(tmp_path) as s:
        assert len(s.exec(select(CustomerOrder)).all()) == n_orders
        assert len(s.exec(select(ShipmentEventRow)).all()) == n_events


def test_bad_rows_are_named_and_nothing_is_written_unless_asked(bot: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "order_id,customer_id,phone_last4,status,amount,created_at\n"
        "A1,C1,13800138000,已发货,99.00,2025-03-01T10:00:00+08:00\n"
        ",C2,,已发货,,\n"
        "A3,C3,12,已发货,九十九,yesterday\n"
        "A1,C9,,已签收,,\n"
        "A5,C5,5678,待发货,10,\n",
        encoding="utf-8",
    )
    code, out = bot("orders", "import", str(bad))
    assert code == 1, out
    assert "3 bad row(s): nothing imported" in out
    assert "│ 3    │ order_id is empty" in out
    assert "amount '九十九' is not a number" in out
    assert "created_at 'yesterday' is not an ISO 8601 time" in out
    assert "phone '12' has fewer than 4 digits" in out
    assert "order_id A1 repeats line 2" in out
    with _db(tmp_path) as s:
        assert s.exec(select(CustomerOrder)).all() == []

    code, out = bot("orders", "import", str(bad), "--skip-bad")
    assert code == 1, out
    assert "Orders: 2 added, 0 updated; 3 bad row(s) skipped" in out
    with _db(tmp_path) as s:
        rows = {o.order_id: o for o in s.exec(select(CustomerOrder)).all()}
    assert sorted(rows) == ["A1", "A5"]
    assert rows["A1"].phone_last4 == "8000"


def test_unreadable_files_and_missing_columns_exit_2(bot: Run, tmp_path: Path) -> None:
    code, out = bot("orders", "import", str(tmp_path / "nope.csv"))
    assert code == 2
    assert "cannot import" in out
    assert "nope.csv" in out
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,customer\n1,2\n", encoding="utf-8")
    code, out = bot("orders", "import", str(wrong))
    assert code == 2
    assert "missing columns: order_id, customer_id, status" in out
    code, out = bot("bindings", "import", str(wrong))
    assert code == 2
    assert "missing columns: platform, user_id, customer_id" in out


def test_bindings_import_and_list(bot: Run, tmp_path: Path) -> None:
    good = tmp_path / "bindings.csv"
    good.write_text(
        "platform,app,user_id,customer_id\n"
        "wecom,,zhangsan,C1001\n"
        "feishu,shop2,ou_abc,C1002\n"
        "web,,web-0123,C1001\n",
        encoding="utf-8",
    )
    code, out = bot("bindings", "import", str(good))
    assert code == 0, out
    assert "Bindings: 3 imported for 2 customers" in out
    code, out = bot("bindings", "list")
    assert code == 0, out
    assert "3 binding(s)" in out
    assert "zhangsan" in out
    assert "ou_abc" in out
    code, out = bot("bindings", "list", "--customer", "C1002")
    assert "1 binding(s)" in out
    assert "shop2" in out
    assert "zhangsan" not in out

    bad = tmp_path / "bad_bindings.csv"
    bad.write_text(
        "platform,user_id,customer_id\n"
        "qq,u1,C1\n"
        "wecom,,C1\n"
        "wecom,lisi,C2\n"
        "wecom,lisi,C3\n"
        "dingtalk,staff1,C4\n",
        encoding="utf-8",
    )
    code, out = bot("bindings", "import", str(bad))
    assert code == 1, out
    assert "platform 'qq' is not one of" in out
    assert "user_id is empty" in out
    assert "user wecom/lisi is listed twice" in out
    assert "nothing imported" in out
    code, out = bot("bindings", "import", str(bad), "--skip-bad")
    assert code == 1, out
    assert "Bindings: 1 imported for 1 customers; 4 bad row(s) skipped" in out
    with _db(tmp_path) as s:
        users = sorted(b.user_id for b in s.exec(select(CustomerBinding)).all())
    assert users == ["ou_abc", "staff1", "web-0123", "zhangsan"]
