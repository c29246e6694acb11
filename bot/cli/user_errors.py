"""Errors a user of the `bot` command can fix, said in one line with what to do.

`bot.cli.main` prints `explain(exc)` and exits with status 2 instead of a traceback: an
unreachable server or Redis or database, a wrong port or URL, a missing file, a setting
that does not fit. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os

import aiohttp
import redis

from bot.errors import ConfigError

USAGE = 2  # the exit status of a user error (argparse's too)

START_SERVER = "is `bot up` (or `bot serve`) running there? Pass --url, or set BOT_PORT"


class UserError(Exception):
    """A problem the command found itself and says in one line."""


def explain(exc: BaseException) -> str | None:
    """One line for an error the user can fix; None for anything else (a bug)."""
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, ConfigError):
        return f"configuration error: {exc}"
    if isinstance(exc, aiohttp.ClientError):
        return _http(exc)
    if isinstance(exc, redis.exceptions.AuthenticationError):
        return f"Redis refused the credentials of REDIS_URL: {exc}"
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return (
            f"cannot reach Redis: {_first_line(exc)}; start it or fix REDIS_URL "
            "(unset, `bot up` starts its own and tells the other commands where it is)"
        )
    if _is_database_error(exc):
        return f"cannot use the database (DATABASE_URL): {_first_line(exc)}"
    if isinstance(exc, OSError):
        return _os(exc)
    if isinstance(exc, TimeoutError):
        return "the server did not answer in time: is it overloaded? (--wait waits longer)"
    return None


def _http(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return f"not an http:// URL: {exc}; write --url as http://HOST:PORT"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot reach {exc.host}:{exc.port} ({_reason(exc.os_error)}): {START_SERVER}"
    if isinstance(exc, aiohttp.ContentTypeError):
        return (
            f"{exc.request_info.real_url} answered {exc.status} without the bot's JSON: "
            "is --url (or BOT_PORT) the bot's address?"
        )
    return f"the server at --url (or BOT_PORT) failed: {type(exc).__name__}: {exc}"


def _os(exc: OSError) -> str | None:
    where = f"{exc.filename}: " if exc.filename else ""
    if exc.errno == errno.EADDRINUSE:
        return f"{_reason(exc)}: another process has that port; stop it or set BOT_PORT / --port"
    if exc.errno == errno.ENOENT:
        return f"{where}no such file or folder"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{where}permission denied"
    if exc.errno == errno.ECONNREFUSED:
        return f"connection refused: {START_SERVER}"
    return None


def _is_database_error(exc: BaseException) -> bool:
    # sqlalchemy is imported late by the commands that use it: not here.
    module = type(exc).__module__
    return module.startswith("sqlalchemy") and type(exc).__name__ in {
        "OperationalError",
        "InterfaceError",
        "ArgumentError",
        "NoSuchModuleError",
    }


def _reason(exc: OSError) -> str:
    # "Connection refused", not asyncio's "Connect call failed ('127.0.0.1', 1)".
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__


def _first_line(exc: BaseException) -> str:
    # The driver's own words for a database error, without SQLAlchemy's "(psycopg.…)".
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__
