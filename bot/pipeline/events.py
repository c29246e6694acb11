"""Platform events that need no answer: counted by the web process, recorded by the worker.

An adapter marks such an event as a NOTICE message (adapters/dingtalk/events.py).
The web process queues it like a message, deduplicated on its event id, and counts it
(`observe`); the worker stores one `PlatformEvent` row (unique on platform, app and event id,
so a redelivered task adds nothing) and queues the message the adapter says should follow
(a DingTalk group join with ``DINGTALK_GROUP_WELCOME_TEXT`` set: the group's welcome turn),
and stores a rating the event gives an earlier answer (a WeCom 智能机器人 👍/👎).
"""

from __future__ import annotations

import logging
import re

from sqlmodel import Session

from adapters.base import FollowsUpNotices, RatesAnswers
from bot import metrics
from bot.db import turns
from bot.db.models import PlatformEvent
from bot.db.records import insert_once
from bot.domain import InboundMessage, MessageKind
from bot.errors import TransientError
from bot.pipeline.intake import IntakeUnavailableError
from bot.runtime import Runtime

log = logging.getLogger(__name__)

_LABEL = re.compile(r"^[A-Za-z0-9_.]{1,64}$")


def is_platform_event(msg: InboundMessage) -> bool:
    """Whether the worker should record `msg` rather than answer it."""
    return msg.kind is MessageKind.NOTICE


def observe(msg: InboundMessage) -> None:
    """Count a queued event; odd event names share one label so the series stay few."""
    event = msg.event
    metrics.PLATFORM_EVENTS.labels(
        msg.platform.value, event if _LABEL.match(event) else "other"
    ).inc()


def record(session: Session, msg: InboundMessage) -> bool:
    """Store the event once; False when it is already stored."""
    # A notice lives in its own "event:<group or corp>" conversation (see its adapter).
    conversation = msg.conversation_id.removeprefix("event:")
    row = PlatformEvent(
        platform=msg.platform.value,
        app=msg.app,
        event_type=msg.event[:64],
        event_id=msg.event_id[:255],
        conversation_id="" if conversation == "app" else conversation[:255],
        summary=msg.text,
        created_at=msg.sent_at,
    )
    return insert_once(session, row)


async def run(msg: InboundMessage, rt: Runtime) -> str:
    """The worker's handling of one event: "recorded" or "duplicate"."""
    fresh = await rt.db.session(lambda session: record(session, msg))
    log.info(
        "%s %s event %s %s %s",
        msg.platform,
        msg.app,
        msg.event,
        msg.event_id,
        "recorded" if fresh else "already recorded",
    )
    try:
        adapter = rt.sender(msg.platform, msg.app)
    except KeyError:
        return "recorded" if fresh else "duplicate"
    rated = adapter.rating(msg) if isinstance(adapter, RatesAnswers) else None
    if rated is not None:
        conversation, event_id, value = rated
        found = await rt.db.session(
            lambda session: turns.rate_external(
                session, msg.platform.value, msg.app, conversation, event_id, value
            )
        )
        log.info(
            "%s %s rating of %s: %s",
            msg.platform,
            msg.app,
            event_id,
            value if found else "no such answer",
        )
    follow_up = adapter.follow_up(msg) if isinstance(adapter, FollowsUpNotices) else None
    if follow_up is not None:
        # Queued even for a duplicate task: intake deduplicates the follow-up on its own id,
        # so a crash between the row and the queue still greets the group once.
        try:
            if await rt.queue(follow_up):
                log.info("queued %s for %s", follow_up.event, follow_up.conversation_id)
        except IntakeUnavailableError as exc:
            raise TransientError(f"cannot queue {follow_up.event}: {exc}") from exc
    return "recorded" if fresh else "duplicate"
