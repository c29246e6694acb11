"""PostgreSQL through asyncpg on the event loop, for the statements every turn runs.

The rest of the code reaches the database through SQLAlchemy in `Database`'s threads. A
turn's own rows go here instead (bot/pipeline/turn_rows_pg.py): each is one statement,
committed on its own, awaited on the loop. A statement through a database thread costs a
thread hop and a GIL hand-off each way, and a transaction two more round trips; that was
over half of the worker's CPU (benchmarks/README.md, issue 13).

The pool opens on first use (a process that never runs a turn never connects). A database
that cannot be reached, or ends the connection, raises `TransientError`: the job is tried
again (bot/pipeline/jobs.py). Any other error (a constraint, a bad statement) is the
work's fault and goes on as asyncpg raised it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from bot.errors import TransientError

# Connections per process (BOT_TURN_DB_CONNECTIONS): a statement holds one for a round
# trip only, so a few dozen serve a thousand turns in flight.
POOL_MAX = 32
CONNECT_TIMEOUT_S = 5.0
ACQUIRE_TIMEOUT_S = 10.0
STATEMENT_TIMEOUT_S = 30.0
# A connection idle this long is closed: a burst's extra connections do not stay open.
IDLE_CLOSE_S = 60.0

# SQLSTATE classes that say the database is unavailable for now, not that the work is
# wrong: 08 connection exception, 53 insufficient resources, 57 operator intervention
# (shut down, restarting), 40 serialisation failure or deadlock (worth another try).
_TRANSIENT_CLASSES = ("08", "53", "57", "40")


def asyncpg_dsn(url: str) -> str:
    """The libpq-style DSN asyncpg takes, from our SQLAlchemy URL (driver suffix dropped)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith(("postgresql", "postgres")):
        raise ValueError(f"not a PostgreSQL URL: {scheme}://…")
    return "postgresql://" + rest


def is_postgresql(url: str) -> bool:
    return url.startswith(("postgresql", "postgres:"))


def is_unavailable(exc: BaseException) -> bool:
    """Whether asyncpg's `exc` says the database is unavailable for now."""
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "")[:2] in _TRANSIENT_CLASSES
    return isinstance(exc, asyncpg.InterfaceError | OSError | TimeoutError)


_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def _described(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


async def _nothing_to_reset(_conn: asyncpg.Connection) -> None:
    """Instead of asyncpg's reset on release (RESET ALL, UNLISTEN, unlock, CLOSE ALL: a
    round trip after every statement): our statements are single and autocommit, and
    none sets, listens, locks or opens a cursor."""


class Pool:
    """A lazily opened asyncpg pool whose errors say whether to try again."""

    def __init__(self, url: str, *, max_size: int = POOL_MAX) -> None:
        self._dsn = asyncpg_dsn(url)
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """The first row of `sql` run with `args`, committed on its own."""
        async with self._connection() as conn:
            return await conn.fetchrow(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Every row of `sql` run with `args`."""
        async with self._connection() as conn:
            return await conn.fetch(sql, *args)

    async def execute(self, sql: str, *args: Any) -> None:
        """Run `sql` with `args`, committed on its own."""
        async with self._connection() as conn:
            await conn.execute(sql, *args)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            pool = self._pool or await self._open()
            conn = await pool.acquire(timeout=ACQUIRE_TIMEOUT_S)
        except _ERRORS as exc:
            # Not connected at all (refused, not accepting connections, no free
            # connection in time): nothing of the work ran, it is worth another try.
            raise TransientError(f"database unavailable: {_described(exc)}") from exc
        try:
            yield conn
        except _ERRORS as exc:
            if not is_unavailable(exc):
                raise
            raise TransientError(f"database unavailable: {_described(exc)}") from exc
        finally:
            await pool.release(conn)

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=1,
                    max_size=self._max_size,
                    timeout=CONNECT_TIMEOUT_S,
                    command_timeout=STATEMENT_TIMEOUT_S,
                    max_inactive_connection_lifetime=IDLE_CLOSE_S,
                    reset=_nothing_to_reset,
                )
            return self._pool
