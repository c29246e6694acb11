"""Composition root: builds adapters, retriever, model router and agent from Settings."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import redis.asyncio as aioredis

from adapters.base import Adapter, Sender
from adapters.dingtalk import DingTalkAdapter
from adapters.feishu import FeishuAdapter
from adapters.tokens import TokenCache
from adapters.web import WebSender
from adapters.wecom import WeComAdapter
from bot.agent import Agent
from bot.domain import DEFAULT_APP, Platform
from bot.llm.factory import build_router
from bot.settings import Settings
from knowledge.base import Retriever

log = logging.getLogger(__name__)

_retrievers: dict[Path, Retriever] = {}
_retrievers_lock = threading.Lock()


def sandbox_api_base(settings: Settings) -> str:
    """The built-in WeCom API stand-in served by our own web process (`bot up` trial mode)."""
    return f"http://127.0.0.1:{settings.core.port}/sandbox/wecom"


def webhook_adapters(
    settings: Settings, redis: aioredis.Redis | None = None
) -> dict[tuple[str, str], Adapter]:
    """Every configured webhook adapter, keyed by (platform, app)."""
    adapters: dict[tuple[str, str], Adapter] = {}
    tokens = TokenCache(redis) if redis is not None else None
    if settings.wecom.enabled:
        w = settings.wecom
        adapters[(Platform.WECOM.value, DEFAULT_APP)] = WeComAdapter(
            corp_id=w.corp_id,
            agent_id=w.agent_id,
            token=w.token.get_secret_value(),
            aes_key=w.aes_key.get_secret_value(),
            secret=w.secret.get_secret_value(),
            api_base=w.api_base,
            tokens=tokens,
            app=DEFAULT_APP,
        )
    if settings.dingtalk.enabled:
        d = settings.dingtalk
        adapters[(Platform.DINGTALK.value, DEFAULT_APP)] = DingTalkAdapter(
            app_key=d.app_key,
            app_secret=d.app_secret.get_secret_value(),
            robot_code=d.robot_code,
            token=d.token.get_secret_value(),
            aes_key=d.aes_key.get_secret_value(),
            api_base=d.api_base,
            oapi_base=d.oapi_base,
            tokens=tokens,
            app=DEFAULT_APP,
        )
    if settings.feishu.enabled:
        f = settings.feishu
        adapters[(Platform.FEISHU.value, DEFAULT_APP)] = FeishuAdapter(
            app_id=f.app_id,
            app_secret=f.app_secret.get_secret_value(),
            verification_token=f.verification_token.get_secret_value(),
            encrypt_key=f.encrypt_key.get_secret_value(),
            api_base=f.api_base,
            tokens=tokens,
            app=DEFAULT_APP,
            bot_open_id=f.bot_open_id,
        )
    return adapters


def sender_for(platform: Platform, app: str, settings: Settings, redis: aioredis.Redis) -> Sender:
    """The sender that answers on `platform`/`app`; raises KeyError when not configured."""
    if platform is Platform.WEB:
        return WebSender(redis, app)
    return webhook_adapters(settings, redis)[(platform.value, app)]


def retriever(settings: Settings) -> Retriever | None:
    """The process-wide knowledge retriever (built once per folder)."""
    from knowledge.retrieval import KeywordRetriever  # only workers need the index

    folder = settings.core.knowledge_dir.resolve()
    if not folder.is_dir():
        log.warning("knowledge folder %s not found; answering without a knowledge base", folder)
        return None
    with _retrievers_lock:
        found = _retrievers.get(folder)
        if found is None:
            found = KeywordRetriever.from_folder(folder)
            _retrievers[folder] = found
        return found


def agent(settings: Settings) -> Agent:
    return Agent(
        build_router(settings),
        retriever(settings),
        system_prompt=settings.core.system_prompt,
        min_confidence=settings.core.faq_min_score,
    )
