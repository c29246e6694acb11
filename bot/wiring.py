"""Composition root: builds adapters, retriever, model router and agent from Settings."""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from adapters.base import Adapter, Sender
from adapters.dingtalk.adapter import DingTalkAdapter
from adapters.feishu.adapter import FeishuAdapter
from adapters.tokens import TokenCache
from adapters.web import WebSender
from adapters.wechat_mp.adapter import WeChatMPAdapter
from adapters.wecom.adapter import WeComAdapter
from adapters.wecom_kf.adapter import WeComKfAdapter
from bot.agent.agent import Agent
from bot.domain import DEFAULT_APP, Platform
from bot.llm.factory import build_router
from bot.orders.base import OrderBackend
from bot.orders.bindings import BindingStore
from bot.settings import (
    DingTalkSettings,
    FeishuSettings,
    Settings,
    WeChatMPSettings,
    WeComKfSettings,
    WeComSettings,
)
from bot.settings import apps as appconfig
from bot.tools.registry import ToolRegistry
from knowledge.base import Retriever
from knowledge.embedding import Embedder
from knowledge.rerank import HTTPReranker

log = logging.getLogger(__name__)

_retrievers: dict[Path, Retriever] = {}
_retrievers_lock = threading.Lock()


def sandbox_api_base(settings: Settings) -> str:
    """The built-in WeCom API stand-in served by our own web process (`bot up` trial mode)."""
    return f"http://127.0.0.1:{settings.core.port}/sandbox/wecom"


def webhook_adapters(
    settings: Settings, redis: aioredis.Redis | None = None
) -> dict[tuple[str, str], Adapter]:
    """Every configured webhook adapter, keyed by (platform, app): env default + bot.toml."""
    tokens = TokenCache(redis) if redis is not None else None
    return {
        (platform, app): adapter_for(platform, app, section, settings, tokens, redis)
        for platform, app, section in appconfig.configured(settings)
    }


def adapter_for(
    platform: str,
    app: str,
    section: object,
    settings: Settings,
    tokens: TokenCache | None,
    redis: aioredis.Redis | None,
) -> Adapter:
    """The adapter of one app from its settings section (env or a bot.toml table)."""
    if isinstance(section, WeComSettings):
        return WeComAdapter(
            corp_id=section.corp_id,
            agent_id=section.agent_id,
            token=section.token.get_secret_value(),
            aes_key=section.aes_key.get_secret_value(),
            secret=section.secret.get_secret_value(),
            api_base=section.api_base,
            tokens=tokens,
            app=app,
        )
    if isinstance(section, WeComKfSettings):
        return WeComKfAdapter(
            corp_id=section.corp_id,
            token=section.token.get_secret_value(),
            aes_key=section.aes_key.get_secret_value(),
            secret=section.secret.get_secret_value(),
            api_base=section.api_base,
            tokens=tokens,
            app=app,
            redis=redis,
        )
    if isinstance(section, DingTalkSettings):
        return DingTalkAdapter(
            app_key=section.app_key,
            app_secret=section.app_secret.get_secret_value(),
            robot_code=section.robot_code,
            token=section.token.get_secret_value(),
            aes_key=section.aes_key.get_secret_value(),
            api_base=section.api_base,
            oapi_base=section.oapi_base,
            tokens=tokens,
            app=app,
            media_max_bytes=section.media_max_bytes,
            media_timeout_s=section.media_timeout_s,
            group_welcome_text=section.group_welcome_text,
        )
    if isinstance(section, FeishuSettings):
        return FeishuAdapter(
            app_id=section.app_id,
            app_secret=section.app_secret.get_secret_value(),
            verification_token=section.verification_token.get_secret_value(),
            encrypt_key=section.encrypt_key.get_secret_value(),
            api_base=section.api_base,
            tokens=tokens,
            app=app,
            bot_open_id=section.bot_open_id,
        )
    if isinstance(section, WeChatMPSettings):
        return WeChatMPAdapter(
            app_id=section.app_id,
            app_secret=section.app_secret.get_secret_value(),
            token=section.token.get_secret_value(),
            aes_key=section.aes_key.get_secret_value(),
            api_base=section.api_base,
            tokens=tokens,
            app=app,
            passive_wait_s=settings.core.mp_passive_wait_s,
            redis=redis,
            custom_api=section.custom_api,
        )
    raise KeyError((platform, app))


def sender_for(platform: Platform, app: str, settings: Settings, redis: aioredis.Redis) -> Sender:
    """The sender that answers on `platform`/`app` with that app's credentials.

    Raises KeyError when the app is not configured in this process.
    """
    if platform is Platform.WEB:
        return WebSender(redis, app)
    section = appconfig.section(settings, platform.value, app)
    if section is None:
        raise KeyError((platform.value, app))
    return adapter_for(platform.value, app, section, settings, TokenCache(redis), redis)


def retriever(settings: Settings, *, max_age_s: float = 5.0) -> Retriever | None:
    """The process-wide knowledge retriever.

    When the database holds the knowledge bases of BOT_KB_NAMES (default ``default``,
    made by `bot kb add` or the first `bot up`), their chunks are indexed (keyword, plus
    dense and fused with EMBEDDING_*, reranked with RERANK_*), and rebuilt when a
    `store.version` moves, checked at most every `max_age_s` seconds. Otherwise the
    knowledge folder is indexed once (`BOT_KNOWLEDGE_DIR`).
    """
    from_db = _db_retriever(settings, max_age_s)
    if from_db is not None:
        return from_db
    return _folder_retriever(settings.core.knowledge_dir.resolve())


def _folder_retriever(folder: Path) -> Retriever | None:
    from knowledge.retrieval import KeywordRetriever  # only workers need the index

    if not folder.is_dir():
        log.warning("knowledge folder %s not found; answering without a knowledge base", folder)
        return None
    with _retrievers_lock:
        found = _retrievers.get(folder)
        if found is None:
            found = KeywordRetriever.from_folder(folder)
            _retrievers[folder] = found
        return found


@dataclass
class _StoreIndex:
    """The index of one database's default knowledge base, and when it was last checked."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    version: str | None = None
    retriever: Retriever | None = None
    checked_at: float = -math.inf


_store_indexes: dict[str, _StoreIndex] = {}


_embedders: dict[tuple[object, ...], Embedder] = {}


def embedder(settings: Settings) -> Embedder | None:
    """The process-wide embedding client of EMBEDDING_* settings; None when not configured."""
    from bot.errors import ConfigError
    from knowledge.embedding import make_embedder

    e = settings.embedding
    if not e.enabled:
        return None
    key = e.api_key.get_secret_value()
    if e.provider == "dashscope":
        key = settings.dashscope.api_key.get_secret_value()
        if not key:
            raise ConfigError("EMBEDDING_PROVIDER=dashscope needs DASHSCOPE_API_KEY")
    config: tuple[object, ...] = (e.provider, e.base_url, e.model, key, e.dim, e.batch_size)
    config = (*config, e.timeout_s, e.retries, e.query_timeout_s)
    with _retrievers_lock:
        found = _embedders.get(config)
        if found is None:
            found = make_embedder(
                e.provider,
                e.base_url,
                e.model,
                key,
                dim=e.dim,
                batch_size=e.batch_size,
                timeout_s=e.timeout_s,
                query_timeout_s=e.query_timeout_s,
                retries=e.retries,
            )
            _embedders[config] = found
        return found


_rerankers: dict[tuple[object, ...], HTTPReranker] = {}


def with_reranker(settings: Settings, found: Retriever) -> Retriever:
    """`found` behind the RERANK_* reranker when one is configured, else `found` itself."""
    from bot.errors import ConfigError
    from knowledge.rerank import RerankingRetriever

    r = settings.rerank
    if not r.enabled:
        return found
    key = r.api_key.get_secret_value()
    if r.provider == "dashscope":
        key = settings.dashscope.api_key.get_secret_value()
        if not key:
            raise ConfigError("RERANK_PROVIDER=dashscope needs DASHSCOPE_API_KEY")
    config = (r.provider, r.base_url, r.model, key, r.timeout_s)
    with _retrievers_lock:
        client = _rerankers.get(config)
        if client is None:
            client = HTTPReranker(
                r.base_url, r.model, key, provider=r.provider or "openai", timeout_s=r.timeout_s
            )
            _rerankers[config] = client
    return RerankingRetriever(found, client, candidates=r.candidates)


def _load_user_dict(settings: Settings) -> None:
    from knowledge.tokenize import load_user_dict, user_dicts

    path = settings.core.jieba_user_dict
    if path is not None and path.resolve() not in user_dicts():
        load_user_dict(path.resolve())


def _db_retriever(settings: Settings, max_age_s: float) -> Retriever | None:
    url = settings.core.effective_database_url()
    names = tuple(settings.core.kb_name_list())
    emb = embedder(settings)
    _load_user_dict(settings)
    index_key = f"{url}|{','.join(names)}|{emb.model if emb is not None else ''}"
    with _retrievers_lock:
        index = _store_indexes.setdefault(index_key, _StoreIndex())
    if time.monotonic() - index.checked_at < max_age_s:
        return index.retriever
    # One thread checks (and rebuilds) while the others keep answering from the current
    # index; only the very first check makes the others wait for its result.
    if not index.lock.acquire(blocking=index.version is None):
        return index.retriever
    try:
        if time.monotonic() - index.checked_at >= max_age_s:
            _refresh(settings, names, emb, index)
    finally:
        index.lock.release()
    return index.retriever


def _refresh(
    settings: Settings, names: tuple[str, ...], emb: Embedder | None, index: _StoreIndex
) -> None:
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import Session

    from bot.db.records import get_engine
    from knowledge import hybrid, store

    e = settings.embedding
    try:
        with Session(get_engine(settings.core.effective_database_url())) as session:
            versions = [store.version(session, name) for name in names]
            current = ";".join(versions) if any(versions) else ""
            if current != index.version:
                built = (
                    hybrid.build(
                        session,
                        names,
                        emb,
                        fusion=e.fusion,
                        weight=e.fusion_weight,
                        sim_floor=e.sim_floor,
                    )
                    if current
                    else None
                )
                log.info(
                    "knowledge index rebuilt: version %s, %d entries",
                    current,
                    len(built) if built is not None else 0,
                )
                index.retriever = with_reranker(settings, built) if built is not None else None
                index.version = current
    except SQLAlchemyError:
        # Keep answering from what we have; the next check tries again.
        log.exception("cannot read the knowledge base from the database")
    index.checked_at = time.monotonic()


_order_parts: dict[tuple[object, ...], object] = {}
_order_parts_lock = threading.Lock()


def order_backend(settings: Settings) -> OrderBackend:
    """The process-wide order backend: our SQL tables, or the merchant's API (ORDERS_*)."""
    o = settings.orders
    if o.backend == "http":
        key: tuple[object, ...] = (
            "http",
            o.http_base_url,
            o.auth_header,
            o.http_order_path,
            o.http_list_path,
            o.http_shipment_path,
            tuple(sorted(o.http_field_map.items())),
            o.http_timeout_s,
        )
    else:
        key = ("sql", settings.core.effective_database_url())
    with _order_parts_lock:
        found = _order_parts.get(key)
        if found is None:
            found = _build_order_backend(settings)
            _order_parts[key] = found
    return found  # type: ignore[return-value]  # stored by this function only


def _build_order_backend(settings: Settings) -> OrderBackend:
    from bot.db.records import get_engine
    from bot.orders.http import HttpOrderBackend, HttpOrderConfig
    from bot.orders.sql import SqlOrderBackend

    o = settings.orders
    if o.backend == "http":
        return HttpOrderBackend(
            HttpOrderConfig(
                base_url=o.http_base_url,
                order_path=o.http_order_path,
                list_path=o.http_list_path,
                shipment_path=o.http_shipment_path,
                auth_header=o.auth_header,
                field_map=o.http_field_map,
                timeout_s=o.http_timeout_s,
            )
        )
    return SqlOrderBackend(get_engine(settings.core.effective_database_url()))


def binding_store(settings: Settings) -> BindingStore:
    """The process-wide customer binding store (database + Redis failed-proof counter)."""
    from bot.db.records import get_engine

    url = settings.core.effective_database_url()
    key = ("bindings", url, settings.core.redis_url, settings.orders.proof_max_failures)
    with _order_parts_lock:
        found = _order_parts.get(key)
        if found is None:
            found = BindingStore(
                get_engine(url),
                settings.core.redis_url,
                max_failures=settings.orders.proof_max_failures,
            )
            _order_parts[key] = found
    return found  # type: ignore[return-value]  # stored by this function only


# The tool registry per (AGENT_TOOLS, AGENT_TOOL_TIMEOUT_S), with the parts it was built on.
_registries: dict[tuple[object, ...], tuple[tuple[object, ...], ToolRegistry]] = {}


def agent(settings: Settings, platform: str | None = None, app: str = DEFAULT_APP) -> Agent:
    """The agent with its model router, knowledge, order tools and identity (AGENT_* settings).

    `platform`/`app` select a bot.toml app's options (kb_names, persona, policy,
    system_prompt), which replace the global ones where set.
    """
    from functools import partial

    from bot.agent.prompt import system_prompt
    from bot.errors import ConfigError
    from bot.tools.builtin import default_registry
    from bot.tools.orders import answer_without_model, order_tools, resolve_customer
    from bot.tools.registry import ToolContext

    a = settings.agent
    opts = appconfig.options(settings, platform, app)
    knowledge = retriever(_with_kb_names(settings, opts.kb_names))
    backend, bindings = order_backend(settings), binding_store(settings)
    # Checking the tools' schemas costs ~20 ms: build the registry once per set of parts
    # (an agent is made per message), again only when the knowledge index is rebuilt.
    config = (a.tool_names, a.tool_timeout_s, opts.kb_names)
    parts = (knowledge, backend, bindings)
    with _retrievers_lock:
        cached = _registries.get(config)
    if cached is not None and all(x is y for x, y in zip(cached[0], parts, strict=True)):
        tools = cached[1]
    else:
        try:
            tools = default_registry(
                knowledge,
                order_tools(backend, bindings),
                enabled=a.tool_names,
                timeout_s=a.tool_timeout_s,
            )
        except ValueError as exc:
            raise ConfigError(f"AGENT_TOOLS: {exc}") from None
        with _retrievers_lock:
            _registries[config] = (parts, tools)

    async def without_model(ctx: ToolContext, text: str) -> str | None:
        return await answer_without_model(
            ctx, text, backend, bindings, id_pattern=settings.orders.id_pattern
        )

    return Agent(
        build_router(settings),
        knowledge,
        system_prompt=system_prompt(
            opts.persona or a.persona,
            opts.policy or a.policy,
            opts.system_prompt or a.system_prompt or settings.core.system_prompt,
        ),
        min_confidence=settings.core.faq_min_score,
        faq_direct_score=settings.core.faq_direct_score,
        timeout_s=a.timeout_s,
        tools=tools,
        max_steps=a.max_steps,
        identify=partial(resolve_customer, bindings),
        # Orders answered without a model only while the order tools are offered at all.
        without_model=without_model if "lookup_order" in tools else None,
    )


def _with_kb_names(settings: Settings, names: tuple[str, ...]) -> Settings:
    """`settings` answering from the knowledge bases `names` (an app's own BOT_KB_NAMES)."""
    if not names:
        return settings
    import copy

    scoped = copy.copy(settings)
    scoped.core = settings.core.model_copy(update={"kb_names": ",".join(names)})
    return scoped
