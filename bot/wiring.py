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
from adapters.dingtalk import DingTalkAdapter
from adapters.feishu import FeishuAdapter
from adapters.tokens import TokenCache
from adapters.web import WebSender
from adapters.wechat_mp import WeChatMPAdapter
from adapters.wecom import WeComAdapter
from adapters.wecom_kf import WeComKfAdapter
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
    if settings.wecom_kf.enabled:
        k = settings.wecom_kf
        adapters[(Platform.WECOM_KF.value, DEFAULT_APP)] = WeComKfAdapter(
            corp_id=k.corp_id,
            token=k.token.get_secret_value(),
            aes_key=k.aes_key.get_secret_value(),
            secret=k.secret.get_secret_value(),
            api_base=k.api_base,
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
    if settings.wechat_mp.enabled:
        m = settings.wechat_mp
        adapters[(Platform.WECHAT_MP.value, DEFAULT_APP)] = WeChatMPAdapter(
            app_id=m.app_id,
            app_secret=m.app_secret.get_secret_value(),
            token=m.token.get_secret_value(),
            aes_key=m.aes_key.get_secret_value(),
            api_base=m.api_base,
            tokens=tokens,
            app=DEFAULT_APP,
            passive_wait_s=settings.core.mp_passive_wait_s,
        )
    return adapters


def sender_for(platform: Platform, app: str, settings: Settings, redis: aioredis.Redis) -> Sender:
    """The sender that answers on `platform`/`app`; raises KeyError when not configured."""
    if platform is Platform.WEB:
        return WebSender(redis, app)
    return webhook_adapters(settings, redis)[(platform.value, app)]


def retriever(settings: Settings, *, max_age_s: float = 5.0) -> Retriever | None:
    """The process-wide knowledge retriever.

    When the database holds the ``default`` knowledge base (made by `bot kb add` or the
    first `bot up`), its chunks are indexed, and rebuilt when its `store.version` moves,
    checked at most every `max_age_s` seconds. Otherwise the knowledge folder is indexed
    once (`BOT_KNOWLEDGE_DIR`).
    """
    from_db = _db_retriever(settings.core.effective_database_url(), max_age_s)
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


def _db_retriever(url: str, max_age_s: float) -> Retriever | None:
    with _retrievers_lock:
        index = _store_indexes.setdefault(url, _StoreIndex())
    if time.monotonic() - index.checked_at < max_age_s:
        return index.retriever
    # One thread checks (and rebuilds) while the others keep answering from the current
    # index; only the very first check makes the others wait for its result.
    if not index.lock.acquire(blocking=index.version is None):
        return index.retriever
    try:
        if time.monotonic() - index.checked_at >= max_age_s:
            _refresh(url, index)
    finally:
        index.lock.release()
    return index.retriever


def _refresh(url: str, index: _StoreIndex) -> None:
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import Session

    from bot.db import get_engine
    from knowledge import store
    from knowledge.retrieval import KeywordRetriever

    try:
        with Session(get_engine(url)) as session:
            current = store.version(session, store.DEFAULT_KB)
            if current != index.version:
                built = (
                    KeywordRetriever.from_store(session, [store.DEFAULT_KB]) if current else None
                )
                log.info(
                    "knowledge index rebuilt: version %s, %d entries",
                    current,
                    len(built) if built is not None else 0,
                )
                index.retriever, index.version = built, current
    except SQLAlchemyError:
        # Keep answering from what we have; the next check tries again.
        log.exception("cannot read the knowledge base from the database")
    index.checked_at = time.monotonic()


def agent(settings: Settings) -> Agent:
    return Agent(
        build_router(settings),
        retriever(settings),
        system_prompt=settings.core.system_prompt,
        min_confidence=settings.core.faq_min_score,
        faq_direct_score=settings.core.faq_direct_score,
    )
