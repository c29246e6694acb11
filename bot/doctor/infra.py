"""Redis and the database: reachable, which versions, pgvector on PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import redis.asyncio as aioredis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from bot.db.engine import normalise_url
from bot.doctor.result import Result, fail, ok, skip, warn
from bot.settings import Settings

TIMEOUT_S = 3.0


async def check_redis(settings: Settings) -> Result:
    name = "Redis"
    url = settings.core.redis_url
    if not url:
        return skip(name, "REDIS_URL unset (`bot up` starts its own Redis)")
    try:
        client = aioredis.Redis.from_url(
            url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S
        )
        try:
            info = await asyncio.wait_for(client.info("server"), TIMEOUT_S + 1)
        finally:
            await client.aclose()
    except Exception as exc:  # a check reports what went wrong, it never crashes
        return fail(
            name,
            first_line(exc),
            "启动 Redis，或修正 REDIS_URL（主机、端口、密码）",
            "start Redis or fix REDIS_URL (host, port, password)",
        )
    return ok(name, f"version {info.get('redis_version', '?')}")


def first_line(exc: BaseException) -> str:
    """The error's own first line (a driver's text, without SQLAlchemy's wrapping)."""
    said = str(getattr(exc, "orig", None) or exc).strip()
    return said.splitlines()[0] if said else type(exc).__name__


def database_engine(settings: Settings) -> Engine:
    """An engine that gives up connecting after a few seconds (no tables created)."""
    url = normalise_url(settings.core.effective_database_url())
    args = {"connect_timeout": int(TIMEOUT_S)} if url.startswith("postgresql") else {}
    return create_engine(url, connect_args=args, pool_pre_ping=False)


def check_database(engine: Engine) -> Result:
    name = "database"
    dialect = engine.dialect.name
    path = engine.url.database if dialect == "sqlite" else None
    if path and path != ":memory:" and not Path(path).exists():
        # The default setup: the first `bot up` creates the file (and its folder).
        return ok(name, f"sqlite {sqlite3.sqlite_version}, {path} not created yet (first start)")
    try:
        with engine.connect() as conn:
            if dialect == "postgresql":
                version = conn.execute(text("SHOW server_version")).scalar()
                vector = conn.execute(
                    text(
                        "SELECT installed_version, default_version FROM pg_available_extensions"
                        " WHERE name = 'vector'"
                    )
                ).first()
            else:
                version = conn.execute(text("SELECT sqlite_version()")).scalar()
                vector = None
    except Exception as exc:  # a check reports what went wrong, it never crashes
        return fail(
            name,
            first_line(exc),
            "启动数据库，或修正 DATABASE_URL（主机、端口、用户、密码、库名）",
            "start the database or fix DATABASE_URL (host, port, user, password, database)",
        )
    detail = f"{dialect} {version}"
    if dialect != "postgresql":
        return ok(name, detail)
    if vector is None:
        # Optional: without it vector search runs in memory (knowledge/pgvector.py).
        return warn(
            name,
            f"{detail}, the pgvector extension is not available (vector search in memory)",
            "在数据库服务器上安装 pgvector（如 postgresql-16-pgvector 或 pgvector/pgvector 镜像）",
            "install pgvector on the database server (postgresql-16-pgvector, or the "
            "pgvector/pgvector image)",
        )
    state = f"installed {vector[0]}" if vector[0] else f"available {vector[1]}"
    return ok(name, f"{detail}, pgvector {state}")
