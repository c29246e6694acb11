"""Identity: which customer account a platform user is, and the proof that makes a binding.

A binding maps (platform, app, user id) to a customer account. It is made by an admin
(API), an import (CSV), or by the user proving ownership of an order (order number plus
the phone number's last four digits). Failed proofs are counted per day in Redis per user,
and also per order and per customer, so nobody can guess the last four digits by trying
them all, not even from many identities at once (10,000 combinations at 10 a day per order
and per customer take years).
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import redis
from sqlalchemy import Row, UniqueConstraint, bindparam
from sqlalchemy import select as sql_select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select
from sqlmodel.sql.expression import SelectOfScalar

from bot import keys
from bot.domain import DEFAULT_APP, Platform
from bot.orders.base import OrderBackendError

log = logging.getLogger(__name__)

DEFAULT_MAX_FAILURES = 5
DEFAULT_MAX_TARGET_FAILURES = 10  # per order and per customer, from all users together
ORDER, CUSTOMER = "order", "customer"  # the targets of a proof
_BEIJING = ZoneInfo("Asia/Shanghai")  # "per day" is the customer's day
_PLATFORMS = tuple(p.value for p in Platform)
MAX_APP, MAX_USER_ID, MAX_CUSTOMER_ID = 64, 255, 64


def _now() -> datetime:
    return datetime.now(UTC)


class BindingSource(StrEnum):
    ADMIN = "admin"
    IMPORT = "import"
    PROOF = "proof"


class CustomerBinding(SQLModel, table=True):
    """One platform user bound to one customer account."""

    __tablename__ = "customer_binding"
    __table_args__ = (UniqueConstraint("platform", "app", "user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=32)
    app: str = Field(max_length=MAX_APP)
    user_id: str = Field(max_length=MAX_USER_ID)
    customer_id: str = Field(index=True, max_length=MAX_CUSTOMER_ID)
    source: str = Field(default=BindingSource.ADMIN.value, max_length=16)
    created_at: datetime = Field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class Binding:
    platform: str
    app: str
    user_id: str
    customer_id: str
    source: str
    created_at: datetime

    def to_json(self) -> dict[str, str]:
        return {**asdict(self), "created_at": self.created_at.isoformat()}


def _binding(row: CustomerBinding | Row[Any]) -> Binding:
    """The binding of a stored row (an entity, or a plain row with the same columns)."""
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return Binding(row.platform, row.app, row.user_id, row.customer_id, row.source, created)


class BindingImportError(ValueError):
    """A bindings CSV that cannot be imported; the message names the line and the column."""


class ProofLimitUnavailableError(OrderBackendError):
    """The failed-proof counter (Redis) cannot be reached: proofs are refused, not unguarded."""


@functools.cache
def _binding_query() -> Any:
    # Built once with bound parameters (asked on every turn; building it cost more than
    # running it, issue 13).
    table = CustomerBinding.__table__  # type: ignore[attr-defined]
    return (
        sql_select(table)
        .where(table.c.platform == bindparam("platform"))
        .where(table.c.app == bindparam("app"))
        .where(table.c.user_id == bindparam("user_id"))
        .limit(1)
    )


class BindingStore:
    """The binding table plus the failed-proof counter; blocking, call it from a thread."""

    def __init__(
        self,
        engine: Engine,
        redis_url: str = "",
        *,
        max_failures: int = DEFAULT_MAX_FAILURES,
        max_target_failures: int = DEFAULT_MAX_TARGET_FAILURES,
    ) -> None:
        self._engine = engine
        # Reads of one statement: no BEGIN and ROLLBACK round trips around them.
        self._reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.max_failures = max_failures
        self.max_target_failures = max_target_failures
        self._redis = (
            redis.Redis.from_url(redis_url, socket_timeout=3, socket_connect_timeout=3)
            if redis_url
            else None
        )
        # Without Redis (a bare `bot chat`), failures are counted in this process only.
        self._local: dict[str, int] = {}
        self._local_lock = threading.Lock()
        table = SQLModel.metadata.tables["customer_binding"]
        SQLModel.metadata.create_all(engine, tables=[table])

    def get(self, platform: str, app: str, user_id: str) -> Binding | None:
        # Asked on every turn (bot/agent/agent.py resolves the customer first): one plain
        # SELECT on an autocommit connection, no ORM session or entity.
        params = {"platform": platform, "app": app, "user_id": user_id}
        with self._reads.connect() as conn:
            row = conn.execute(_binding_query(), params).first()
        return _binding(row) if row is not None else None

    def bind(
        self,
        platform: str,
        app: str,
        user_id: str,
        customer_id: str,
        source: BindingSource | str = BindingSource.ADMIN,
    ) -> Binding:
        """Bind the user to `customer_id`, replacing any earlier binding of that user."""
        for value, name in ((platform, "platform"), (app, "app"), (user_id, "user_id")):
            if not value.strip():
                raise ValueError(f"{name} is required")
        if not customer_id.strip():
            raise ValueError("customer_id is required")
        if platform not in _PLATFORMS:
            raise ValueError(f"unknown platform {platform!r}; one of: {', '.join(_PLATFORMS)}")
        for value, name, limit in (
            (app, "app", MAX_APP),
            (user_id, "user_id", MAX_USER_ID),
            (customer_id, "customer_id", MAX_CUSTOMER_ID),
        ):
            if len(value) > limit:  # the column's size: PostgreSQL would refuse the row
                raise ValueError(f"{name} is at most {limit} characters")
        source = BindingSource(source)
        for _ in range(2):  # a concurrent first insert of the same user: update it instead
            try:
                with Session(self._engine) as session:
                    row = session.exec(_where(platform, app, user_id)).first()
                    if row is None:
                        row = CustomerBinding(
                            platform=platform, app=app, user_id=user_id, customer_id=customer_id
                        )
                    row.customer_id = customer_id
                    row.source = source.value
                    row.created_at = _now()
                    session.add(row)
                    session.commit()
                    session.refresh(row)
                    log.info("bound %s/%s user to a customer (%s)", platform, app, source.value)
                    return _binding(row)
            except IntegrityError:
                continue
        raise RuntimeError("binding kept conflicting with concurrent writes")

    def unbind(self, platform: str, app: str, user_id: str) -> bool:
        with Session(self._engine) as session:
            row = session.exec(_where(platform, app, user_id)).first()
            if row is None:
                return False
            session.delete(row)
            session.commit()
            return True

    def list(
        self,
        *,
        platform: str = "",
        app: str = "",
        user_id: str = "",
        customer_id: str = "",
        search: str = "",
        limit: int = 100,
        offset: int = 0,
    ) -> list[Binding]:
        """The bindings matching every given filter, newest first; `search`: a part of the
        user id or the customer id, any case."""
        query = select(CustomerBinding)
        if search:
            query = query.where(
                col(CustomerBinding.user_id).icontains(search, autoescape=True)
                | col(CustomerBinding.customer_id).icontains(search, autoescape=True)
            )
        for column, value in (
            (CustomerBinding.platform, platform),
            (CustomerBinding.app, app),
            (CustomerBinding.user_id, user_id),
            (CustomerBinding.customer_id, customer_id),
        ):
            if value:
                query = query.where(column == value)
        newest = (col(CustomerBinding.created_at).desc(), col(CustomerBinding.id).desc())
        query = query.order_by(*newest).offset(offset).limit(limit)
        with Session(self._engine) as session:
            return [_binding(r) for r in session.exec(query)]

    def import_csv(self, source: Path | str) -> int:
        """Bind every row of a CSV (a path, or the text itself): the rows imported.

        Columns: platform, app (empty: default), user_id, customer_id. Every row is checked
        before any is written, so a bad file changes nothing.
        """
        text = source.read_text(encoding="utf-8-sig") if isinstance(source, Path) else source
        rows = _binding_rows(text.lstrip("\ufeff"))
        for platform, app, user_id, customer_id in rows:
            self.bind(platform, app, user_id, customer_id, BindingSource.IMPORT)
        return len(rows)

    # The failed-proof counters. A proof first reserves an attempt (INCR), so concurrent
    # guesses cannot slip past a limit; a successful proof gives its attempts back.

    def reserve_attempt(self, platform: str, app: str, user_id: str) -> bool:
        """Count one proof attempt of a user; False (nothing counted) past the day's limit."""
        return self._reserve(
            keys.proof_failures_of_user(platform, app, user_id, _today()), self.max_failures
        )

    def release_attempt(self, platform: str, app: str, user_id: str) -> None:
        """A proof succeeded: it does not count as a failure."""
        self._release(keys.proof_failures_of_user(platform, app, user_id, _today()))

    def reserve_target(self, kind: str, target: str) -> bool:
        """Count one proof attempt against an order or a customer (`ORDER`, `CUSTOMER`),
        whoever makes it; False past the day's limit."""
        return self._reserve(
            keys.proof_failures_of_target(kind, target, _today()), self.max_target_failures
        )

    def release_target(self, kind: str, target: str) -> None:
        self._release(keys.proof_failures_of_target(kind, target, _today()))

    def _reserve(self, key: str, limit: int) -> bool:
        if self._redis is None:
            with self._local_lock:
                if self._local.get(key, 0) >= limit:
                    return False
                self._local[key] = self._local.get(key, 0) + 1
                return True
        try:
            pipe = self._redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, keys.PROOF_FAILURES_TTL_S)
            count = int(pipe.execute()[0])
            if count > limit:
                self._redis.decr(key)
                return False
        except redis.RedisError as exc:
            raise ProofLimitUnavailableError(f"proof counter unavailable: {exc}") from exc
        return True

    def _release(self, key: str) -> None:
        if self._redis is None:
            with self._local_lock:
                self._local[key] = max(0, self._local.get(key, 0) - 1)
            return
        try:
            self._redis.decr(key)
        except redis.RedisError:
            log.warning("proof counter: cannot give back a successful attempt")

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()


def _where(platform: str, app: str, user_id: str) -> SelectOfScalar[CustomerBinding]:
    return select(CustomerBinding).where(
        CustomerBinding.platform == platform,
        CustomerBinding.app == app,
        CustomerBinding.user_id == user_id,
    )


def _today() -> str:
    """Beijing's date: the daily caps reset at midnight where the customers are."""
    return datetime.now(_BEIJING).strftime("%Y%m%d")


def _binding_rows(text: str) -> list[tuple[str, str, str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    columns = set(reader.fieldnames or ())
    missing = [c for c in ("platform", "user_id", "customer_id") if c not in columns]
    if missing:
        raise BindingImportError(f"missing columns: {', '.join(missing)}")
    rows: list[tuple[str, str, str, str]] = []
    for line, raw in enumerate(reader, start=2):
        values = {k: (v or "").strip() for k, v in raw.items() if k}
        platform, user_id = values.get("platform", ""), values.get("user_id", "")
        customer_id = values.get("customer_id", "")
        if not (platform and user_id and customer_id):
            raise BindingImportError(f"line {line}: platform, user_id and customer_id are required")
        if platform not in _PLATFORMS:
            raise BindingImportError(f"line {line}: unknown platform {platform!r}")
        rows.append((platform, values.get("app") or DEFAULT_APP, user_id, customer_id))
    return rows
