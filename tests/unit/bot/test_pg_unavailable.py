"""bot.db.pg: which asyncpg errors a job tries again, and the URL asyncpg is given.

The errors are asyncpg's own classes, each with the SQLSTATE PostgreSQL sends; the real
outage (a database that ends its connections and refuses new ones under load) is
tests/integration/faults/test_database_down.py, which runs the turn's rows through asyncpg.
"""

from __future__ import annotations

import pytest
from asyncpg import exceptions as pg_exc

from bot.db.pg import asyncpg_dsn, is_postgresql, is_unavailable


@pytest.mark.parametrize(
    "error",
    [
        pg_exc.AdminShutdownError("terminating connection due to administrator command"),
        pg_exc.CannotConnectNowError("the database system is starting up"),
        pg_exc.TooManyConnectionsError("sorry, too many clients already"),
        pg_exc.ConnectionFailureError("connection failure"),
        pg_exc.DeadlockDetectedError("deadlock detected"),
        pg_exc.SerializationError("could not serialize access"),
        pg_exc.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_unreachable_or_busy_database_is_worth_another_try(error: Exception) -> None:
    assert is_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        pg_exc.UniqueViolationError("duplicate key value"),
        pg_exc.ForeignKeyViolationError("violates foreign key constraint"),
        pg_exc.UndefinedTableError('relation "message" does not exist'),
        pg_exc.DataError("invalid input"),
        ValueError("not a database error"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_error_of_the_work_itself_is_not_tried_again(error: Exception) -> None:
    assert not is_unavailable(error)


def test_the_driver_suffix_is_dropped_and_the_rest_kept() -> None:
    url = "postgresql+psycopg://bot:s3cret@db.internal:5433/bot?sslmode=require"
    assert asyncpg_dsn(url) == "postgresql://bot:s3cret@db.internal:5433/bot?sslmode=require"
    assert asyncpg_dsn("postgres://u@h/d") == "postgresql://u@h/d"
    assert is_postgresql(url)
    assert is_postgresql("postgres://u@h/d")
    assert not is_postgresql("sqlite:///data/bot.db")
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        asyncpg_dsn("sqlite:///data/bot.db")
