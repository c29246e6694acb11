"""Platform events that need no answer: counted by the web process, recorded by the worker.

An adapter marks such an event with ``meta["platform_event"]`` (adapters/dingtalk_events.py).
The web process queues it like a message, deduplicated on its event id, and counts it
(`observe`); the worker stores one `PlatformEvent` row (unique on platform, app and event id,
so a redelivered task adds nothing) and, for a DingTalk group join with
``DINGTALK_GROUP_WELCOME_TEXT`` set, queues the group's welcome turn.
"""

from __future__ import annotations

import logging
import re

import redis.asyncio as aioredis
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from adapters.dingtalk import events as dingtalk_events
from bot import metrics
from bot.db import records as db
from bot.db.models import PlatformEvent
from bot.domain import InboundMessage, MessageKind, Platform
from bot.errors import TransientError
from bot.pipeline.intake import IntakeUnavailableError, accept
from bot.settings import DingTalkSettings, Settings
from bot.settings import apps as appconfig

log = logging.getLogger(__name__)

EVENT_META = "platform_event"
_LABEL = re.compile(r"^[A-Za-z0-9_.]{1,64}$")


def is_platform_event(msg: InboundMessage) -> bool:
    """Whether the worker should record `msg` rather than answer it."""
    return msg.kind is MessageKind.EVENT and EVENT_META in msg.meta


def observe(msg: InboundMessage) -> None:
    """Count a queued event; odd event names share one label so the series stay few."""
    event = msg.meta.get(EVENT_META, "")
    metrics.PLATFORM_EVENTS.labels(
        msg.platform.value, event if _LABEL.match(event) else "other"
    ).inc()


def record(session: Session, msg: InboundMessage) -> bool:
    """Store the event once; False when it is already stored."""
    conversation = msg.meta.get("openConversationId") or msg.meta.get("chatId") or ""
    row = PlatformEvent(
        platform=msg.platform.value,
        app=msg.app,
        event_type=msg.meta.get(EVENT_META, "")[:64],
        event_id=msg.event_id[:255],
        conversation_id=(conversation or msg.meta.get("corpId", ""))[:255],
        summary=msg.meta.get("event_summary", ""),
        created_at=msg.sent_at,
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True


async def run(msg: InboundMessage, settings: Settings) -> str:
    """The worker's handling of one event: "recorded" or "duplicate"."""
    engine = db.get_engine(settings.core.effective_database_url())
    with Session(engine) as session:
        fresh = record(session, msg)
    log.info(
        "%s %s event %s %s %s",
        msg.platform,
        msg.app,
        msg.meta.get(EVENT_META, ""),
        msg.event_id,
        "recorded" if fresh else "already recorded",
    )
    welcome = _welcome(msg, settings)
    if welcome is not None:
        # Queued even for a duplicate task: intake deduplicates the welcome on its own id,
        # so a crash between the row and the queue still greets the group once.
        redis = aioredis.Redis.from_url(
            settings.core.redis_url, socket_connect_timeout=3, socket_timeout=10
        )
        try:
            if await accept(redis, welcome):
                log.info("queued the group welcome for %s", welcome.conversation_id)
        except IntakeUnavailableError as exc:
            raise TransientError(f"cannot queue the group welcome: {exc}") from exc
        finally:
            await redis.aclose()
    return "recorded" if fresh else "duplicate"


def _welcome(msg: InboundMessage, settings: Settings) -> InboundMessage | None:
    if msg.platform is not Platform.DINGTALK:
        return None
    # The app's own section: a bot.toml app may greet differently from the default one.
    section = appconfig.section(settings, msg.platform.value, msg.app)
    if not isinstance(section, DingTalkSettings):
        return None
    return dingtalk_events.group_welcome(msg, section.group_welcome_text)
