"""bot.db.engine.is_unavailable: which database errors a job tries again (bot/pipeline/jobs.py).

The errors are those SQLAlchemy raises, wrapping what psycopg and sqlite3 raise; the real
outage (a database that ends its connections and refuses new ones under load) is
tests/integration/faults/test_database_down.py.
"""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from sqlalchemy import exc as sa_exc

from bot.db.engine import is_unavailable


def _wrapped(kind: type[sa_exc.DBAPIError], orig: Exception, **kw: bool) -> sa_exc.DBAPIError:
    return kind("SELECT 1", {}, orig, **kw)


@pytest.mark.parametrize(
    "error",
    [
        _wrapped(sa_exc.OperationalError, psycopg.OperationalError("connection refused")),
        _wrapped(sa_exc.OperationalError, sqlite3.OperationalError("database is locked")),
        _wrapped(sa_exc.InterfaceError, psycopg.InterfaceError("the connection is closed")),
        sa_exc.TimeoutError("QueuePool limit of size 10 overflow 20 reached"),
        _wrapped(sa_exc.DBAPIError, psycopg.Error("server closed"), connection_invalidated=True),
    ],
    ids=["refused", "sqlite-locked", "closed", "pool-timeout", "invalidated"],
)
def test_an_unreachable_or_busy_database_is_worth_another_try(error: Exception) -> None:
    assert is_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        _wrapped(sa_exc.IntegrityError, psycopg.IntegrityError("duplicate key")),
        _wrapped(sa_exc.ProgrammingError, psycopg.ProgrammingError("no such column")),
        _wrapped(sa_exc.DataError, psycopg.DataError("value too long")),
        _wrapped(sa_exc.DBAPIError, psycopg.Error("odd")),
        sa_exc.NoResultFound("no row"),
    ],
    ids=["integrity", "programming", "data", "other-driver-error", "no-row"],
)
def test_a_fault_of_the_work_itself_is_not(error: Exception) -> None:
    assert not is_unavailable(error)
