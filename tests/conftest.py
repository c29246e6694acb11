"""Shared fixtures: a clean environment, real Redis and real PostgreSQL on loopback."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis
import redis.asyncio as aioredis

# Under pytest-xdist each worker flushes a Redis database of its own: gw0 15, gw1 14, …
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
REDIS_URL = os.environ.get("TEST_REDIS_URL", f"redis://127.0.0.1:6379/{15 - _WORKER}")
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

_DESIGN_ENV = re.compile(
    r"^(DATABASE_URL|REDIS_URL|BOT_.*|VLLM_.*|DASHSCOPE_.*|EMBEDDING_.*|WECOM_.*|DINGTALK_.*"
    r"|FEISHU_.*|WECHAT_.*|HANDOFF_.*|ORDERS_.*)$"
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test sees the developer's configuration or `.env`."""
    for name in list(os.environ):
        if _DESIGN_ENV.match(name):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


def _redis_or_fail() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(
            f"Redis is not reachable at {REDIS_URL} ({exc}); start it with "
            "'redis-server --daemonize yes --port 6379' or run .ci/run"
        )
    return client


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A dedicated, flushed Redis database for one test."""
    client = _redis_or_fail()
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database made for this test run and dropped after it."""
    import uuid

    import psycopg

    name = f"bot_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}); start it with "
            "'pg_ctlcluster --skip-systemctl-redirect 15 main start' or run .ci/run"
        )
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    from bot.db.engine import dispose_all

    dispose_all()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def _pg_template(pg_url: str) -> Iterator[str]:
    """A database with every table already made: each test's own database copies it."""
    import psycopg
    from sqlmodel import SQLModel, create_engine

    from bot.db import engine as db_engine

    name = pg_url.rsplit("/", 1)[1] + "_tpl"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{pg_url.rsplit('/', 1)[0]}/{name}"
    engine = create_engine(db_engine.normalise_url(url))
    SQLModel.metadata.create_all(engine)
    engine.dispose()
    yield name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class _Databases:
    """This test process's copies of the template: one made ahead, in a thread, while a test
    runs, so the next test that asks gets it without waiting for CREATE DATABASE (~0.3 s);
    a test's database is dropped in that thread too, after the test."""

    def __init__(self, template: str) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.template = template
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-databases")
        self.spare = self.thread.submit(self._create)

    def _create(self) -> str:
        import uuid

        import psycopg

        name = f"bot_t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
            # A crash may lose a test's last commits: it is dropped anyway.
            admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        return name

    def take(self) -> str:
        """A fresh database's name; the next one is made meanwhile."""
        spare, self.spare = self.spare, self.thread.submit(self._create)
        return spare.result()

    def drop(self, name: str) -> None:
        self.thread.submit(_drop_database, name)

    def close(self) -> None:
        if self.spare.exception() is None:  # a failure was already a test's error
            self.drop(self.spare.result())
        self.thread.shutdown(wait=True)


@pytest.fixture(scope="session")
def _databases(_pg_template: str) -> Iterator[_Databases]:
    databases = _Databases(_pg_template)
    yield databases
    databases.close()


@pytest.fixture
def fresh_database(request: pytest.FixtureRequest) -> Callable[[], str]:
    """A callable that gives this test its own empty PostgreSQL database (made on first call).

    TEST_DATABASE=sqlite gives a SQLite file instead, to run the suite on the embedded default.
    """
    made: list[str] = []

    def make() -> str:
        if made:
            return made[0]
        if os.environ.get("TEST_DATABASE", "postgresql") == "sqlite":
            path = request.getfixturevalue("tmp_path") / "data" / "bot.db"
            made.append(f"sqlite:///{path.as_posix()}")
            return made[0]
        made.append(postgresql_database(request))
        return made[0]

    return make


def postgresql_database(request: pytest.FixtureRequest) -> str:
    """The URL of an empty PostgreSQL database of this test's own, whatever TEST_DATABASE
    says; dropped when the test's fixtures are torn down."""
    databases: _Databases = request.getfixturevalue("_databases")
    name = databases.take()
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    request.addfinalizer(lambda: _drop(databases, name, url))
    return url


def _drop(databases: _Databases, name: str, url: str) -> None:
    from bot.db.engine import dispose

    dispose(url)  # this process's pooled connections to it, now
    databases.drop(name)


def _drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """Under `-n N` with the default distribution, the slowest tests start first
    (tests/schedule.py)."""
    if config.getoption("dist") != "load":
        return None
    from tests.schedule import LongestFirst

    return LongestFirst(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """In an xdist worker, the collection in the order LongestFirst hands it out."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        from tests.schedule import rank

        items.sort(key=lambda item: rank(item.nodeid))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist (`make test`), a worker hands its counts to the controller."""
    from tests.reports import LINES

    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["fault_counts"] = list(LINES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """Under pytest-xdist, the controller gathers each worker's counts to print them."""
    from tests.reports import LINES

    LINES.extend(getattr(node, "workeroutput", {}).get("fault_counts", []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The counts the fault-injection and fuzz tests report (tests/reports.py)."""
    from tests.reports import LINES

    if LINES:
        terminalreporter.section("fault injection and fuzzing: counts")
        for line in LINES:
            terminalreporter.write_line(line)
