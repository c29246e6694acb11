"""Engines and the threads that run blocking database calls off the event loop.

SQLite under ./data/ by default, PostgreSQL when DATABASE_URL says so. Tables are created
on first use; a migration tool comes when the schema starts changing in place.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine

from bot.db import models as _models  # noqa: F401 - registers the bot's tables
from knowledge import models as _knowledge_models  # noqa: F401 - registers the KB tables

T = TypeVar("T")
# Connections per PostgreSQL engine: the pool and the threads that use it are sized alike.
POOL_SIZE = 10
POOL_OVERFLOW = 20
# Connections older than this are replaced: a firewall or a pooler in between may end idle
# ones silently.
RECYCLE_S = 1800
_settings = {"pre_ping": True}


# A database that cannot be reached, ended the connection, or is busy (a lock or a pool
# that did not free up in time): the same work is worth another try later.
_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database is unavailable for now, not that the work is wrong
    (an IntegrityError or a ProgrammingError is a fault of the work: no retry mends it)."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and bool(exc.connection_invalidated)


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs (the driver we install)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def get_engine(url: str) -> Engine:
    """One engine per URL per process, tables created on first use."""
    url = normalise_url(url)
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create(url)
            SQLModel.metadata.create_all(engine)
            _engines[url] = engine
        return engine


def _create(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record) -> None:  # type: ignore[no-untyped-def]
            # WAL lets the web process read while workers write; busy_timeout waits on locks.
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL is still crash-safe (a power cut may lose the last commits).
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(
        url,
        pool_pre_ping=_settings["pre_ping"],
        pool_recycle=RECYCLE_S,
        pool_size=POOL_SIZE,
        max_overflow=POOL_OVERFLOW,
    )


def check_before_use(enabled: bool) -> None:
    """Whether engines made from now on check a pooled connection (a round trip) before
    each use. On by default: a console request never meets a connection a database restart
    ended. `bot worker` turns it off: each check is a round trip from a database thread
    (0-12 % of the worker's CPU when a turn made about five checkouts, benchmarks/README.md;
    on PostgreSQL a turn's own rows now go through asyncpg, bot/db/pg.py, and what still
    checks out here is retrieval, summaries and handoff moves). A turn that meets an ended
    connection is tried again (bot/pipeline/jobs.py), and the pool drops every connection
    older than the failure."""
    _settings["pre_ping"] = enabled


def dispose(url: str) -> None:
    """Close and forget the engine of `url` (before its database is dropped)."""
    with _engines_lock:
        engine = _engines.pop(normalise_url(url), None)
    if engine is not None:
        engine.dispose()


def dispose_all() -> None:
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


class Database:
    """One engine, and a bounded set of threads that run its blocking calls for async code.

    An event loop shared by many conversations must never wait on a query itself: `run`
    and `session` hand the work to these threads (as many as the pool has connections).
    """

    def __init__(self, url: str, *, threads: int = POOL_SIZE) -> None:
        self.engine = get_engine(url)
        # The same pool, each statement committing on its own (see `autocommit`).
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="db")

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in a database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    async def session(self, fn: Callable[[Session], T]) -> T:
        """`fn(session)` in a database thread, with a session closed afterwards."""

        def work() -> T:
            # Rows keep their values after a commit: the turn reads them again right away,
            # and a reload per row would cost a query each (values come from Python defaults).
            with Session(self.engine, expire_on_commit=False) as session:
                return fn(session)

        return await self.run(work)

    async def autocommit(self, fn: Callable[[Session], T]) -> T:
        """`session` for work of one statement, or reads: each statement commits on its
        own, without the BEGIN and COMMIT (or ROLLBACK) round trips around it."""

        def work() -> T:
            with Session(self._autocommit, expire_on_commit=False) as session:
                return fn(session)

        return await self.run(work)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
