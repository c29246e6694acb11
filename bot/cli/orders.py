"""`bot orders import` and `bot bindings import|list`: the SQL order backend's data by hand.

Every row of a file is checked first and each bad one is reported with its line number.
By default a file with a bad row changes nothing (exit 1); `--skip-bad` imports the good
rows and still exits 1, so a script notices. A file that cannot be read at all, or lacks
a required column, exits 2. The writing itself is the importers `bot up` uses
(bot/orders/sql.py, BindingStore.import_csv), fed with the rows that passed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bot.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.engine import Engine

    from bot.orders.bindings import BindingStore

ORDER_COLUMNS = ("order_id", "customer_id", "status")
SHIPMENT_COLUMNS = ("order_id", "time", "description")
BINDING_COLUMNS = ("platform", "user_id", "customer_id")
_ID_MAX = 64  # CustomerOrder.order_id / customer_id column sizes
_USER_MAX = 255  # CustomerBinding.user_id
_PHONE_COLUMNS = ("phone_last4", "customer_phone_last4", "phone")


class FileProblem(Exception):
    """The whole file is unusable (missing, not UTF-8, a required column missing)."""


@dataclass
class Checked:
    """A file's rows split into good ones and (line, problem) pairs."""

    header: list[str]
    good: list[dict[str, str]] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)

    def as_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.good)
        return out.getvalue()


# --- checking rows (pure) ----------------------------------------------------------------

RowCheck = Callable[[dict[str, str]], list[str]]


def check_rows(text: str, required: Sequence[str], check: RowCheck, key: str = "") -> Checked:
    """Split CSV `text` into good rows and per-line problems; `key` must not repeat."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in reader.fieldnames or () if h]
    missing = [c for c in required if c not in header]
    if missing:
        raise FileProblem(f"missing columns: {', '.join(missing)} (has: {', '.join(header)})")
    checked = Checked(header)
    first_line: dict[str, int] = {}
    for line, raw in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
        if not any(row.values()):
            continue  # a blank line
        problems = check(row)
        if key and row.get(key):
            if row[key] in first_line:
                problems.append(f"{key} {row[key]} repeats line {first_line[row[key]]}")
            else:
                first_line[row[key]] = line
        if problems:
            checked.bad.append((line, "; ".join(problems)))
        else:
            checked.good.append(row)
    return checked


def order_problems(row: dict[str, str]) -> list[str]:
    from bot.orders.base import last4, parse_amount, parse_time

    problems = _required(row, ("order_id", "customer_id"))
    problems += _too_long(row, ("order_id", "customer_id"), _ID_MAX)
    if row.get("amount") and parse_amount(row["amount"]) is None:
        problems.append(f"amount {row['amount']!r} is not a number")
    if row.get("created_at") and parse_time(row["created_at"]) is None:
        problems.append(f"created_at {row['created_at']!r} is not an ISO 8601 time")
    phone = next((row[c] for c in _PHONE_COLUMNS if row.get(c)), "")
    if phone and not last4(phone):
        problems.append(f"phone {phone!r} has fewer than 4 digits")
    return problems


def shipment_problems(row: dict[str, str]) -> list[str]:
    from bot.orders.base import parse_time

    problems = _required(row, ("order_id", "time", "description"))
    if row.get("time") and parse_time(row["time"]) is None:
        problems.append(f"time {row['time']!r} is not an ISO 8601 time")
    return problems


def binding_problems(row: dict[str, str]) -> list[str]:
    from bot.domain import Platform

    problems = _required(row, ("platform", "user_id", "customer_id"))
    platforms = [p.value for p in Platform]
    if row.get("platform") and row["platform"] not in platforms:
        problems.append(f"platform {row['platform']!r} is not one of {', '.join(platforms)}")
    problems += _too_long(row, ("user_id",), _USER_MAX)
    problems += _too_long(row, ("customer_id", "app"), _ID_MAX)
    return problems


def _required(row: dict[str, str], names: Sequence[str]) -> list[str]:
    return [f"{name} is empty" for name in names if not row.get(name)]


def _too_long(row: dict[str, str], names: Sequence[str], limit: int) -> list[str]:
    return [f"{n} is longer than {limit} characters" for n in names if len(row.get(n, "")) > limit]


# --- the commands ------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `orders` and `bindings` on the `bot` parser."""
    orders = sub.add_parser("orders", help="the SQL order backend: import orders and shipments")
    orders_sub = orders.add_subparsers(dest="orders_command", required=True)
    imp = orders_sub.add_parser("import", help="add or update orders from a CSV (by order_id)")
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.add_argument(
        "--shipments", type=Path, metavar="FILE", help="logistics events CSV (replaces theirs)"
    )
    bindings = sub.add_parser("bindings", help="platform users bound to customer accounts")
    bindings_sub = bindings.add_subparsers(dest="bindings_command", required=True)
    bimp = bindings_sub.add_parser("import", help="bind users from a CSV")
    bimp.add_argument("file", type=Path, metavar="FILE")
    for parser in (imp, bimp):
        parser.add_argument(
            "--skip-bad", action="store_true", help="import the good rows even if some are bad"
        )
    listing = bindings_sub.add_parser("list", help="the bindings, newest first")
    listing.add_argument("--platform", default="")
    listing.add_argument("--app", default="")
    listing.add_argument("--user", default="")
    listing.add_argument("--customer", default="")
    listing.add_argument("--limit", type=int, default=100)


def cmd_orders(args: argparse.Namespace) -> int:
    settings = Settings.load()
    console = _console()
    if settings.orders.backend != "sql":
        console.print(f"ORDERS_BACKEND is {settings.orders.backend!r}: orders live in that system")
        return 2
    try:
        orders = _check_file(args.file, ORDER_COLUMNS, order_problems, key="order_id")
        shipments = (
            _check_file(args.shipments, SHIPMENT_COLUMNS, shipment_problems)
            if args.shipments
            else None
        )
    except FileProblem as exc:
        console.print(f"[red]cannot import:[/red] {exc}")
        return 2
    bad = _report(console, args.file, orders)
    if shipments is not None:
        bad += _report(console, args.shipments, shipments)
    if bad and not args.skip_bad:
        console.print(f"{bad} bad row(s): nothing imported (fix them, or use --skip-bad)")
        return 1
    engine = _engine(settings)
    added, updated = _import_orders(engine, orders)
    summary = f"Orders: {added} added, {updated} updated"
    if shipments is not None:
        events = _import_shipments(engine, shipments)
        orders_with = len({r["order_id"] for r in shipments.good})
        summary += f"; {events} logistics events for {orders_with} orders"
    if bad:
        summary += f"; {bad} bad row(s) skipped"
    console.print(summary)
    return 1 if bad else 0


def cmd_bindings(args: argparse.Namespace) -> int:
    from bot.orders.bindings import BindingStore

    settings = Settings.load()
    console = _console()
    store = BindingStore(_engine(settings))  # no Redis: the proof counter is not used here
    if args.bindings_command == "list":
        return _list_bindings(console, store, args)
    try:
        checked = _check_file(args.file, BINDING_COLUMNS, binding_problems, key="")
    except FileProblem as exc:
        console.print(f"[red]cannot import:[/red] {exc}")
        return 2
    _repeats(checked)
    bad = _report(console, args.file, checked)
    if bad and not args.skip_bad:
        console.print(f"{bad} bad row(s): nothing imported (fix them, or use --skip-bad)")
        return 1
    imported = store.import_csv(checked.as_csv()) if checked.good else 0
    customers = len({r["customer_id"] for r in checked.good})
    summary = f"Bindings: {imported} imported for {customers} customers"
    console.print(summary + (f"; {bad} bad row(s) skipped" if bad else ""))
    return 1 if bad else 0


def _repeats(checked: Checked) -> None:
    """A user bound twice in one file: the second row would silently win; report it."""
    seen = Counter(_binding_key(r) for r in checked.good)
    repeated = {k for k, n in seen.items() if n > 1}
    if not repeated:
        return
    keep = [r for r in checked.good if _binding_key(r) not in repeated]
    for row in checked.good:
        if _binding_key(row) in repeated:
            checked.bad.append((0, f"user {row['platform']}/{row['user_id']} is listed twice"))
    checked.good = keep


def _binding_key(row: dict[str, str]) -> tuple[str, str, str]:
    return row["platform"], row.get("app") or "default", row["user_id"]


def _list_bindings(console: Console, store: BindingStore, args: argparse.Namespace) -> int:
    from rich.table import Table

    rows = store.list(
        platform=args.platform,
        app=args.app,
        user_id=args.user,
        customer_id=args.customer,
        limit=max(1, args.limit),
    )
    table = Table("platform", "app", "user", "customer", "source", "created")
    for b in rows:
        created = b.created_at.strftime("%Y-%m-%d %H:%M")
        table.add_row(b.platform, b.app, b.user_id, b.customer_id, b.source, created)
    console.print(table)
    console.print(f"{len(rows)} binding(s)")
    return 0


def _check_file(path: Path, required: Sequence[str], check: RowCheck, key: str = "") -> Checked:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise FileProblem(f"{path}: {exc}") from exc
    try:
        return check_rows(text, required, check, key)
    except FileProblem as exc:
        raise FileProblem(f"{path}: {exc}") from exc


def _report(console: Console, path: Path, checked: Checked) -> int:
    """Print the bad rows of one file; how many there were."""
    if not checked.bad:
        return 0
    from rich.table import Table

    table = Table("line", "problem", title=f"{path}: {len(checked.bad)} bad row(s)")
    for line, problem in sorted(checked.bad):
        table.add_row(str(line) if line else "-", problem)
    console.print(table)
    return len(checked.bad)


def _import_orders(engine: Engine, checked: Checked) -> tuple[int, int]:
    from bot.orders.sql import import_orders_csv

    if not checked.good:
        return 0, 0
    with _scratch(checked, "orders.csv") as path:
        return import_orders_csv(engine, path)


def _import_shipments(engine: Engine, checked: Checked) -> int:
    from bot.orders.sql import import_shipments_csv

    if not checked.good:
        return 0
    with _scratch(checked, "shipments.csv") as path:
        return import_shipments_csv(engine, path)


@contextlib.contextmanager
def _scratch(checked: Checked, name: str) -> Iterator[Path]:
    """The good rows as a file, for the path-based importers `bot up` uses too."""
    with tempfile.TemporaryDirectory(prefix="bot-import-") as folder:
        path = Path(folder) / name
        path.write_text(checked.as_csv(), encoding="utf-8")
        yield path


def _engine(settings: Settings) -> Engine:
    from bot.db.engine import get_engine

    return get_engine(settings.core.effective_database_url())


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False)
