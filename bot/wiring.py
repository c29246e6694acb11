"""Builders: adapters, knowledge index, order parts and the agent, each made from Settings.

Nothing here is cached or looked up per message: a process builds what it needs once (the
worker's `bot.runtime.Runtime`, the web app at start-up) and keeps it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import redis.asyncio as aioredis
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session

from adapters.base import Adapter, Sender
from adapters.dingtalk import DingTalkAdapter
from adapters.dingtalk import sweep as dingtalk_sweep
from adapters.dingtalk.streaming import DingTalkCardAdapter
from adapters.feishu import FeishuAdapter
from adapters.feishu import sweep as feishu_sweep
from adapters.feishu.streaming import FeishuStreamingAdapter
from adapters.tokens import TokenCache
from adapters.web import WebSender
from adapters.wechat_mp import WeChatMPAdapter
from adapters.wecom import WeComAdapter
from adapters.wecom_aibot import WeComAiBotAdapter
from adapters.wecom_aibot import sweep as aibot_sweep
from adapters.wecom_kf import WeComKfAdapter
from bot.agent.agent import Agent
from bot.domain import DEFAULT_APP, Platform
from bot.errors import ConfigError
from bot.llm.base import LLMClient
from bot.orders.base import OrderBackend
from bot.orders.bindings import BindingStore
from bot.settings import (
    DingTalkSettings,
    FeishuSettings,
    Settings,
    WeChatMPSettings,
    WeComAiBotSettings,
    WeComKfSettings,
    WeComSettings,
)
from bot.settings import apps as appconfig
from bot.settings.base import Section
from bot.tools.registry import ToolRegistry
from knowledge.base import Retriever
from knowledge.cache import KnowledgeIndex
from knowledge.embedding import Embedder
from knowledge.search.rerank import HTTPReranker

if TYPE_CHECKING:
    from bot.tools.orders import CustomerOf

log = logging.getLogger(__name__)

# Each settings section builds its platform's adapter; the adapter's keyword arguments are
# the section's fields of the same name (secrets unwrapped).
ADAPTERS: dict[type[Section], type[Any]] = {
    WeComSettings: WeComAdapter,
    WeComKfSettings: WeComKfAdapter,
    WeComAiBotSettings: WeComAiBotAdapter,
    DingTalkSettings: DingTalkAdapter,
    FeishuSettings: FeishuAdapter,
    WeChatMPSettings: WeChatMPAdapter,
}


def sandbox_origin(settings: Settings) -> str:
    """This server's own address, where the trial-mode stand-ins are (bot/web/sandbox/)."""
    return f"http://127.0.0.1:{settings.core.port}"


def sandbox_api_base(settings: Settings) -> str:
    """The built-in WeCom API stand-in served by our own web process (`bot up` trial mode)."""
    return f"http://127.0.0.1:{settings.core.port}/sandbox/wecom"


def webhook_adapters(
    settings: Settings, redis: aioredis.Redis | None = None
) -> dict[tuple[str, str], Adapter]:
    """Every configured webhook adapter, keyed by (platform, app): env default + bot.toml."""
    tokens = TokenCache(redis) if redis is not None else None
    return {
        (platform, app): adapter_for(
            section, app=app, settings=settings, tokens=tokens, redis=redis
        )
        for platform, app, section in appconfig.configured(settings)
    }


def adapter_for(
    section: Section,
    *,
    app: str,
    settings: Settings,
    tokens: TokenCache | None,
    redis: aioredis.Redis | None,
) -> Adapter:
    """The adapter of one app from its settings section (env or a bot.toml table)."""
    # bot.toml tables use subclasses of the env sections (bot/settings/apps.py).
    adapter_class = next(cls for model, cls in ADAPTERS.items() if isinstance(section, model))
    if isinstance(section, FeishuSettings) and section.streaming_cards:
        adapter_class = FeishuStreamingAdapter  # an ability only these apps have
    if isinstance(section, DingTalkSettings) and section.card_template_id:
        adapter_class = DingTalkCardAdapter  # AI cards: only apps with a template
    params = inspect.signature(adapter_class).parameters
    fields = section.model_dump()
    values: dict[str, Any] = {name: _plain(fields[name]) for name in params if name in fields}
    extras = {
        "app": app,
        "tokens": tokens,
        "redis": redis,
        # Official Account passive replies: how long a webhook may wait for the answer.
        "passive_wait_s": settings.core.mp_passive_wait_s,
    }
    values.update({name: value for name, value in extras.items() if name in params})
    if isinstance(section, WeComAiBotSettings) and settings.core.sandbox:
        # Trial mode: `bot simulate wecom_aibot --image` serves its picture from this server.
        values["media_hosts"] = f"{values.get('media_hosts', '')},{sandbox_origin(settings)}"
    adapter: Adapter = adapter_class(**values)
    return adapter


def _plain(value: object) -> object:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def sender_for(platform: Platform, app: str, settings: Settings, redis: aioredis.Redis) -> Sender:
    """The sender that answers on `platform`/`app` with that app's credentials.

    Raises KeyError when the app is not configured in this process.
    """
    if platform is Platform.WEB:
        return WebSender(redis, app)
    section = appconfig.section(settings, platform.value, app)
    if section is None:
        raise KeyError((platform.value, app))
    return adapter_for(section, app=app, settings=settings, tokens=TokenCache(redis), redis=redis)


def embedder(settings: Settings) -> Embedder | None:
    """The embedding client of EMBEDDING_* settings; None when not configured."""
    from knowledge.embedding import make_embedder

    e = settings.embedding
    if not e.enabled:
        return None
    key = e.api_key.get_secret_value()
    if e.provider == "dashscope":
        key = settings.dashscope.api_key.get_secret_value()
        if not key:
            raise ConfigError("EMBEDDING_PROVIDER=dashscope needs DASHSCOPE_API_KEY")
    return make_embedder(
        e.provider,
        e.base_url,
        e.model,
        key,
        dim=e.dim,
        batch_size=e.batch_size,
        timeout_s=e.timeout_s,
        query_timeout_s=e.query_timeout_s,
        retries=e.retries,
        calls_per_minute=e.calls_per_minute,
    )


def reranker(settings: Settings) -> HTTPReranker | None:
    """The reranking client of RERANK_* settings; None when not configured."""
    r = settings.rerank
    if not r.enabled:
        return None
    key = r.api_key.get_secret_value()
    if r.provider == "dashscope":
        key = settings.dashscope.api_key.get_secret_value()
        if not key:
            raise ConfigError("RERANK_PROVIDER=dashscope needs DASHSCOPE_API_KEY")
    return HTTPReranker(
        r.base_url, r.model, key, provider=r.provider or "openai", timeout_s=r.timeout_s
    )


def with_reranker(settings: Settings, found: Retriever, client: HTTPReranker | None) -> Retriever:
    """`found` behind the reranker `client` when there is one, else `found` itself."""
    from knowledge.search.rerank import RerankingRetriever

    if client is None:
        return found
    return RerankingRetriever(found, client, candidates=settings.rerank.candidates)


def load_user_dict(settings: Settings) -> None:
    """Load BOT_JIEBA_USER_DICT into the tokenizer once per process."""
    from knowledge.text.tokenize import load_user_dict as load
    from knowledge.text.tokenize import user_dicts

    path = settings.core.jieba_user_dict
    if path is not None and path.resolve() not in user_dicts():
        load(path.resolve())


def knowledge_index(
    settings: Settings,
    engine: Engine,
    names: Sequence[str],
    *,
    embedding: Embedder | None,
    rerank: HTTPReranker | None,
    max_age_s: float = 5.0,
    folder: Path | Literal["settings"] | None = "settings",
) -> KnowledgeIndex:
    """The knowledge bases `names` (keyword, plus dense and fused with EMBEDDING_*, reranked
    with RERANK_*), rebuilt when they change; the knowledge folder when the database has
    none of them (BOT_KNOWLEDGE_DIR)."""
    from knowledge.search import hybrid

    load_user_dict(settings)
    e = settings.embedding

    def build(session: Session, kb_names: Sequence[str]) -> Retriever:
        built = hybrid.build(
            session,
            kb_names,
            embedding,
            fusion=e.fusion,
            weight=e.fusion_weight,
            sim_floor=e.sim_floor,
        )
        return with_reranker(settings, built, rerank)

    return KnowledgeIndex(
        engine,
        names,
        build,
        folder=settings.core.knowledge_dir.resolve() if folder == "settings" else folder,
        max_age_s=max_age_s,
    )


def order_backend(settings: Settings, engine: Engine) -> OrderBackend:
    """Our SQL order tables, or the merchant's API (ORDERS_*)."""
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
    return SqlOrderBackend(engine)


def binding_store(settings: Settings, engine: Engine) -> BindingStore:
    """Customer bindings (database) with the failed-proof counter (Redis)."""
    return BindingStore(
        engine,
        settings.core.redis_url,
        max_failures=settings.orders.proof_max_failures,
        max_target_failures=settings.orders.proof_max_target_failures,
    )


def tool_registry(
    settings: Settings,
    knowledge: Retriever | None,
    backend: OrderBackend,
    bindings: BindingStore,
) -> ToolRegistry:
    """The tools of AGENT_TOOLS (all by default), their schemas checked once, here."""
    from bot.tools.builtin import default_registry
    from bot.tools.orders import order_tools

    a = settings.agent
    try:
        return default_registry(
            knowledge,
            order_tools(backend, bindings),
            enabled=a.tool_names,
            timeout_s=a.tool_timeout_s,
        )
    except ValueError as exc:
        raise ConfigError(f"AGENT_TOOLS: {exc}") from None


def agent(
    settings: Settings,
    *,
    router: LLMClient | None,
    knowledge: Retriever | None,
    backend: OrderBackend,
    bindings: BindingStore,
    platform: str | None = None,
    app: str = DEFAULT_APP,
    customer_of: CustomerOf | None = None,
) -> Agent:
    """The agent with its model router, knowledge, order tools and identity (AGENT_* settings).

    `platform`/`app` select a bot.toml app's options (persona, policy, system_prompt, the
    small-talk texts), which
    replace the global ones where set; `knowledge` is that app's knowledge index;
    `customer_of` reads each turn's customer binding (default: `bindings`, in a thread).
    """
    from bot.agent.prompt import system_prompt
    from bot.agent.smalltalk import SmallTalkTexts
    from bot.tools.orders import answer_without_model, resolve_customer
    from bot.tools.registry import ToolContext

    a = settings.agent
    opts = appconfig.options(settings, platform, app)
    tools = tool_registry(settings, knowledge, backend, bindings)

    async def without_model(ctx: ToolContext, text: str) -> str | None:
        return await answer_without_model(
            ctx, text, backend, bindings, id_pattern=settings.orders.id_pattern
        )

    return Agent(
        router,
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
        identify=partial(resolve_customer, bindings, read=customer_of),
        # Orders answered without a model only while the order tools are offered at all.
        without_model=without_model if "lookup_order" in tools else None,
        small_talk=SmallTalkTexts(
            greeting=opts.greeting_text or a.greeting_text,
            thanks=opts.thanks_text or a.thanks_text,
            goodbye=opts.goodbye_text or a.goodbye_text,
            identity=opts.identity_text or a.identity_text,
        ),
        vision=settings.sees_images and router is not None,
    )


def kb_names(settings: Settings, platform: str | None, app: str) -> tuple[str, ...]:
    """The knowledge bases `platform`/`app` answers from (its bot.toml kb_names, else
    BOT_KB_NAMES)."""
    opts = appconfig.options(settings, platform, app)
    return tuple(opts.kb_names) or tuple(settings.core.kb_name_list())


# A periodic job that closes what dead turns left open on a platform (bot/runtime.py runs
# them): (redis, http, now) -> how many it closed.
Sweeper = Callable[[aioredis.Redis, aiohttp.ClientSession, float], Awaitable[int]]


def sweepers(settings: Settings) -> list[Sweeper]:
    """The sweepers of the configured platforms (streams a crashed worker left open)."""
    platforms = {platform for platform, _app, _section in appconfig.configured(settings)}
    found: list[Sweeper] = []
    if Platform.WECOM_AIBOT.value in platforms:

        async def aibot(redis: aioredis.Redis, http: aiohttp.ClientSession, now: float) -> int:
            return await aibot_sweep.sweep(redis, http, now=now)

        found.append(aibot)
    card_apps = {
        app: section
        for _platform, app, section in appconfig.configured(settings)
        if isinstance(section, DingTalkSettings) and section.card_template_id
    }
    if card_apps:

        async def dingtalk(redis: aioredis.Redis, http: aiohttp.ClientSession, now: float) -> int:
            tokens = TokenCache(redis)
            built = {
                app: adapter_for(section, app=app, settings=settings, tokens=tokens, redis=redis)
                for app, section in card_apps.items()
            }
            apps = {a: d for a, d in built.items() if isinstance(d, DingTalkCardAdapter)}
            return await dingtalk_sweep.sweep(redis, http, apps, now=now)

        found.append(dingtalk)
    streaming_apps = {
        app: section
        for _platform, app, section in appconfig.configured(settings)
        if isinstance(section, FeishuSettings) and section.streaming_cards
    }
    if streaming_apps:

        async def feishu(redis: aioredis.Redis, http: aiohttp.ClientSession, now: float) -> int:
            tokens = TokenCache(redis)
            built = {
                app: adapter_for(section, app=app, settings=settings, tokens=tokens, redis=redis)
                for app, section in streaming_apps.items()
            }
            apps = {a: f for a, f in built.items() if isinstance(f, FeishuStreamingAdapter)}
            return await feishu_sweep.sweep(redis, http, apps, now=now)

        found.append(feishu)
    return found
