"""What a worker process builds once and every message shares: clients, stores, senders and
agents, all on the process's one event loop.

Opened on the loop that will use it (its Redis and HTTP clients belong to that loop) and
closed when the process stops. Nothing is built per message: `sender` and `agent` make each
platform app's object on first use and keep it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from functools import cached_property

import aiohttp
import redis.asyncio as aioredis

from adapters.base import Sender, UsesSession
from bot import keys, wiring
from bot.agent.agent import Agent
from bot.db.engine import Database
from bot.domain import InboundMessage, Platform
from bot.llm import board
from bot.llm.base import LLMClient
from bot.llm.factory import backend_names, build_router
from bot.llm.openai_compat import OpenAICompatClient
from bot.orders.base import OrderBackend
from bot.orders.bindings import BindingStore
from bot.pipeline.intake import accept
from bot.pipeline.turn_rows import TurnRows, for_database
from bot.settings import Settings
from knowledge.cache import KnowledgeIndex
from knowledge.embedding import Embedder
from knowledge.search.rerank import HTTPReranker

log = logging.getLogger(__name__)

# Connections kept per process: enough for every conversation in flight to make its call.
REDIS_CONNECTIONS = 512
HTTP_CONNECTIONS = 512
HTTP_CONNECTIONS_PER_HOST = 256


class Runtime:
    """The long-lived parts of one process, opened on its event loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        redis: aioredis.Redis,
        http: aiohttp.ClientSession,
        db: Database,
        rows: TurnRows,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.http = http
        self.db = db
        # The rows every turn writes: asyncpg on this loop for PostgreSQL, else `db`.
        self.rows = rows
        self._senders: dict[tuple[Platform, str], Sender] = {}
        self._agents: dict[tuple[str, str], Agent] = {}
        self._knowledge: dict[tuple[str, ...], KnowledgeIndex] = {}
        self._board: asyncio.Task[None] | None = None
        self._sweeping: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, settings: Settings, *, db_threads: int = 16) -> Runtime:
        # The database first, in a thread: it connects (to make missing tables), which must
        # not hold up the loop, and a database that is down fails this before anything
        # else is opened (and would have to be closed).
        url = settings.core.effective_database_url()
        db = await asyncio.to_thread(Database, url, threads=db_threads)
        # A blocking pool: past REDIS_CONNECTIONS commands wait for a free connection
        # (up to the timeout) instead of failing at once with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.core.redis_url,
            socket_connect_timeout=3,
            socket_timeout=10,
            max_connections=REDIS_CONNECTIONS,
            timeout=10,
            health_check_interval=30,
        )
        redis = aioredis.Redis.from_pool(pool)
        connector = aiohttp.TCPConnector(
            limit=HTTP_CONNECTIONS, limit_per_host=HTTP_CONNECTIONS_PER_HOST
        )
        http = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=30, connect=5)
        )
        rows = for_database(url, db, connections=settings.core.turn_db_connections)
        rt = cls(settings, redis=redis, http=http, db=db, rows=rows)
        backends = backend_names(settings)
        if backends:
            # The dashboard's view of this process's model breakers (bot/llm/board.py).
            rt._board = asyncio.create_task(board.run(redis, backends))
        found = wiring.sweepers(settings)
        if found:
            rt._sweeping = asyncio.create_task(_sweep_forever(redis, http, found))
        return rt

    async def close(self) -> None:
        for task in (self._board, self._sweeping):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        router = self.__dict__.get("router")  # only if it was built
        for client in getattr(router, "clients", ()):
            if isinstance(client, OpenAICompatClient):
                await client.aclose()
        await self.http.close()
        await self.redis.aclose()
        await self.rows.close()
        await asyncio.to_thread(self.db.close)

    # --- what the turns share --------------------------------------------------------------

    async def queue(self, message: InboundMessage) -> bool:
        """Queue `message` as the web process would (dedupe, ticket, enqueue in one step)."""
        return bool(await accept(self.redis, message))

    def sender(self, platform: Platform, app: str) -> Sender:
        """The sender of `platform`/`app`; KeyError when this process does not have it."""
        key = (platform, app)
        found = self._senders.get(key)
        if found is None:
            found = self._senders[key] = wiring.sender_for(platform, app, self.settings, self.redis)
            if isinstance(found, UsesSession):
                found.use_session(self.http)  # a Feishu streaming card's updates
        return found

    def agent(self, platform: str, app: str) -> Agent:
        """The agent of `platform`/`app` (a bot.toml app may have its own persona and KBs)."""
        key = (platform, app)
        found = self._agents.get(key)
        if found is None:
            found = self._agents[key] = wiring.agent(
                self.settings,
                router=self.router,
                knowledge=self.knowledge(wiring.kb_names(self.settings, platform, app)),
                backend=self.orders,
                bindings=self.bindings,
                platform=platform,
                app=app,
                customer_of=self.rows.customer_reader(),
            )
        return found

    def knowledge(self, names: tuple[str, ...]) -> KnowledgeIndex:
        found = self._knowledge.get(names)
        if found is None:
            found = self._knowledge[names] = wiring.knowledge_index(
                self.settings,
                self.db.engine,
                names,
                embedding=self.embedder,
                rerank=self.reranker,
            )
        return found

    @cached_property
    def router(self) -> LLMClient | None:
        return build_router(self.settings, keep_clients=True)

    @cached_property
    def embedder(self) -> Embedder | None:
        return wiring.embedder(self.settings)

    @cached_property
    def reranker(self) -> HTTPReranker | None:
        return wiring.reranker(self.settings)

    @cached_property
    def orders(self) -> OrderBackend:
        return wiring.order_backend(self.settings, self.db.engine)

    @cached_property
    def bindings(self) -> BindingStore:
        return wiring.binding_store(self.settings, self.db.engine)


async def sweep_once(
    redis: aioredis.Redis, http: aiohttp.ClientSession, sweepers: list[wiring.Sweeper]
) -> int | None:
    """One round of every sweeper, by whichever worker takes the round's lock first; how
    many streams were closed, None when another worker has this round."""
    if not await redis.set(keys.SWEEP_LOCK, "1", nx=True, ex=keys.SWEEP_LOCK_TTL_S):
        return None
    now = time.time()
    closed = 0
    for sweeper in sweepers:
        closed += await sweeper(redis, http, now)
    return closed


async def _sweep_forever(
    redis: aioredis.Redis, http: aiohttp.ClientSession, sweepers: list[wiring.Sweeper]
) -> None:
    while True:
        await asyncio.sleep(keys.SWEEP_EVERY_S)
        try:
            await sweep_once(redis, http, sweepers)
        except Exception:
            # Redis or a platform briefly away: the next round tries again.
            log.exception("sweeping open streams failed")
