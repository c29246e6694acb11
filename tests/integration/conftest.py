"""Fixtures for the integration tests: settings, fake platform API, web app, Celery worker."""

from __future__ import annotations

import os
import secrets
import string
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.wecom import simulate as wecom_simulate
from bot.settings import Settings
from tests.fakes.base import serve
from tests.fakes.dashscope_server import dashscope_app
from tests.fakes.openai_server import LLMFakeState, openai_app
from tests.fakes.wecom_api import WeComFakeState, make_wecom_app
from tests.integration.private_redis import PrivateRedis

# An in-process worker stops after its tasks in flight (workers.pool.SHUTDOWN_WAIT_S, 30 s)
# and its clients (10 s): a shorter wait left a worker thread running after a test that
# ended with a task still retrying, and every later worker of that test process then
# failed to start (each test after it failing at setup at the 90 s timeout).
SHUTDOWN_TIMEOUT_S = 45

REPO = Path(__file__).resolve().parents[2]
SAMPLE_KB = REPO / "examples" / "knowledge"


@dataclass
class WeComApp:
    """Credentials of a test WeCom app and a builder of signed, encrypted callbacks."""

    corp_id: str
    agent_id: str
    secret: str
    token: str
    aes_key: str

    def env(self, api_base: str) -> dict[str, str]:
        return {
            "WECOM_CORP_ID": self.corp_id,
            "WECOM_AGENT_ID": self.agent_id,
            "WECOM_SECRET": self.secret,
            "WECOM_TOKEN": self.token,
            "WECOM_AES_KEY": self.aes_key,
            "WECOM_API_BASE": api_base,
        }

    def section(self, api_base: str) -> dict[str, str]:
        return {k.removeprefix("WECOM_").lower(): v for k, v in self.env(api_base).items()}

    def callback(
        self,
        text: str,
        *,
        user: str = "zhangsan",
        msg_id: str | None = None,
        timestamp: int | None = None,
        corp_id: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        now = timestamp or int(time.time())
        return wecom_simulate.build_callback(
            text,
            corp_id=corp_id or self.corp_id,
            agent_id=self.agent_id,
            token=self.token,
            aes_key=self.aes_key,
            from_user=user,
            msg_id=msg_id or str(secrets.randbelow(10**18) + 10**18),
            create_time=now,
            timestamp=str(now),
            nonce=str(secrets.randbelow(10**9)),
            random_prefix=os.urandom(16),
        )


@pytest.fixture
def wecom_app() -> WeComApp:
    alphabet = string.ascii_letters + string.digits
    return WeComApp(
        corp_id="wwtest" + secrets.token_hex(4),
        agent_id="1000002",
        secret=secrets.token_urlsafe(16),
        token=secrets.token_urlsafe(8),
        aes_key="".join(secrets.choice(alphabet) for _ in range(43)),
    )


@pytest.fixture
def wecom_api(wecom_app: WeComApp) -> Iterator[tuple[WeComFakeState, str]]:
    state = WeComFakeState(
        corp_id=wecom_app.corp_id, secret=wecom_app.secret, agent_id=int(wecom_app.agent_id)
    )
    with serve(make_wecom_app(state)) as url:
        yield state, url


@pytest.fixture
def make_settings(
    redis_url: str, tmp_path: Path, fresh_database: Callable[[], str]
) -> Callable[..., Settings]:
    """Settings for one test: real Redis, its own PostgreSQL database (unless a test names
    one, e.g. SQLite for the embedded default), the sample knowledge."""

    def make(**sections: Any) -> Settings:
        given = sections.get("core", {})
        core = {
            "redis_url": redis_url,
            "data_dir": tmp_path / "data",
            "knowledge_dir": SAMPLE_KB,
            # Many tests ask FAQ questions word for word to test the model path: no direct
            # FAQ answers unless a test sets the threshold itself.
            "faq_direct_score": 1.01,
            # Burst coalescing would make every turn wait its window: off unless a test sets it.
            "burst_window_s": 0,
            **({} if "database_url" in given else {"database_url": fresh_database()}),
            **sections.pop("core", {}),
        }
        return Settings.load(None, core=core, **sections)

    return make


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[[Settings], Any]]:
    """An aiohttp TestClient over create_app(settings)."""
    from bot.web.app import create_app

    clients: list[TestClient] = []

    async def make(settings: Settings) -> TestClient:
        client = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@dataclass
class Fakes:
    """The fake WeCom API and both model backends of one test, with their URLs."""

    wecom: WeComFakeState
    wecom_url: str
    vllm: LLMFakeState
    vllm_url: str
    dashscope: LLMFakeState
    dashscope_url: str

    def sections(self, wecom_app: WeComApp) -> dict[str, Any]:
        return {
            "wecom": wecom_app.section(self.wecom_url),
            "vllm": {"base_url": f"{self.vllm_url}/v1", "model": self.vllm.model, "timeout_s": 3},
            "dashscope": {
                "api_key": self.dashscope.api_key,
                "model": self.dashscope.model,
                "base_url": f"{self.dashscope_url}/api/v1",
                "timeout_s": 3,
            },
        }

    def env(self, wecom_app: WeComApp) -> dict[str, str]:
        env = wecom_app.env(self.wecom_url)
        env.update(
            {
                "VLLM_BASE_URL": f"{self.vllm_url}/v1",
                "VLLM_MODEL": self.vllm.model,
                "VLLM_TIMEOUT_S": "3",
                "DASHSCOPE_API_KEY": self.dashscope.api_key,
                "DASHSCOPE_MODEL": self.dashscope.model,
                "DASHSCOPE_BASE_URL": f"{self.dashscope_url}/api/v1",
                "DASHSCOPE_TIMEOUT_S": "3",
            }
        )
        return env


@pytest.fixture
def fakes(wecom_api: tuple[WeComFakeState, str]) -> Iterator[Fakes]:
    from bot.llm import breaker

    vllm = LLMFakeState(model="qwen-test")
    dashscope = LLMFakeState(model="qwen-plus", api_key="sk-test-dashscope")
    with serve(openai_app(vllm)) as vllm_url, serve(dashscope_app(dashscope)) as ds_url:
        yield Fakes(wecom_api[0], wecom_api[1], vllm, vllm_url, dashscope, ds_url)
    # Breakers are process-wide: a test that took a backend down must not leak that state.
    breaker.reset_all()


@pytest.fixture
def celery_worker() -> Iterator[Callable[[Settings], Any]]:
    """Start a real Celery worker (the bot's own pool: tasks on one event loop) in this
    process for the given settings."""
    import contextlib

    from celery.contrib.testing.worker import start_worker

    from workers.celery_app import app, configure

    stack = contextlib.ExitStack()

    def start(settings: Settings) -> None:
        configure(settings)
        # The worker thread sees the stop flag between two BRPOPs of the broker: 0.1 s ones
        # instead of kombu's 1 s, so a test's teardown waits ~0.05 s for it, not ~0.5 s.
        options = app.conf.broker_transport_options
        app.conf.broker_transport_options = {**options, "polling_interval": 0.1}
        stack.enter_context(
            start_worker(
                app,
                pool="workers.pool:AsyncPool",
                concurrency=8,
                perform_ping_check=False,
                loglevel="WARNING",
                shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            )
        )

    with stack:
        yield start


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Poll without blocking the loop (the app under test and fakes may share it)."""
    import asyncio

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout_s}s: {_describe(predicate)}")


def _describe(predicate: Callable[[], object]) -> str:
    """Where the condition was written (file:line and its text), to name it in a failure."""
    import inspect

    code = getattr(predicate, "__code__", None)
    if code is None:
        return repr(predicate)
    where = f"{Path(code.co_filename).name}:{code.co_firstlineno}"
    try:
        line = inspect.getsourcelines(predicate)[0][0].strip()
    except (OSError, TypeError, IndexError):
        return where
    return f"{where} `{line}`"


def faq_answer(question: str) -> str:
    """The answer written in the sample FAQ for `question` (its main question)."""
    from knowledge.loaders import load_faq_csv

    for entry in load_faq_csv(SAMPLE_KB / "faq.csv"):
        if entry.question == question:
            return entry.answer
    raise KeyError(question)


@pytest.fixture
async def open_runtime() -> AsyncIterator[Callable[[Settings], Any]]:
    """Open the worker's `Runtime` for settings on the test's loop (closed after the test)."""
    from bot.runtime import Runtime

    opened: list[Runtime] = []

    async def open_(settings: Settings) -> Runtime:
        rt = await Runtime.open(settings)
        opened.append(rt)
        return rt

    yield open_
    for rt in opened:
        await rt.close()


@pytest.fixture
def knowledge_of() -> Iterator[Callable[..., Any]]:
    """Build the worker's knowledge index for settings (BOT_KB_NAMES) as the runtime does;
    its embedding and reranking clients are closed after the test."""
    from bot import wiring
    from bot.db.engine import get_engine

    clients: list[Any] = []

    def build(settings: Settings, *, max_age_s: float = 0) -> Any:
        embedding, rerank = wiring.embedder(settings), wiring.reranker(settings)
        clients.extend(c for c in (embedding, rerank) if c is not None)
        return wiring.knowledge_index(
            settings,
            get_engine(settings.core.effective_database_url()),
            settings.core.kb_name_list(),
            embedding=embedding,
            rerank=rerank,
            max_age_s=max_age_s,
        )

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of the test's own, to kill, pause or fill at will without touching
    the Redis the other test processes share."""
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()
