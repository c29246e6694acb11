"""Pull jobs: a webhook that only says "messages are waiting" (微信客服's `kf_msg_or_event`).

Runs in the worker, never in the web process: the pull is a remote call of unknown length
and the callback must be answered at once. `workers.tasks.handle_message` hands such a
trigger here instead of to the turn pipeline, so the agent never sees it; the adapter
(`adapters.base.PullsMessages`) pulls and hands each message to `bot.pipeline.turn.intake`,
which dedupes, tickets and queues it like any webhook message.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from adapters.base import PullsMessages
from bot.domain import InboundMessage, MessageKind
from bot.errors import TransientError
from bot.pipeline.intake import IntakeUnavailableError
from bot.runtime import Runtime

log = logging.getLogger(__name__)


def is_pull(msg: InboundMessage) -> bool:
    """True for a "pull now" trigger, which is pulled, never answered."""
    return msg.kind is MessageKind.PULL


async def run(msg: InboundMessage, rt: Runtime) -> str:
    """Pull for one trigger; "synced:N" (N queued) or "unroutable"."""

    async def queue(message: InboundMessage) -> bool:
        try:
            return await rt.queue(message)
        except IntakeUnavailableError as exc:
            # The adapter keeps its read position: the retry pulls the same page again.
            raise TransientError(f"pull queue: {exc}", msg.platform.value) from exc

    try:
        adapter = rt.sender(msg.platform, msg.app)
    except KeyError:
        adapter = None
    if not isinstance(adapter, PullsMessages):
        log.error(
            "%s %s cannot pull on this worker; %s dropped", msg.platform, msg.app, msg.event_id
        )
        return "unroutable"
    try:
        return f"synced:{await adapter.pull(msg, rt.http, queue)}"
    except aioredis.RedisError as exc:
        raise TransientError(f"redis unavailable: {exc}") from exc
