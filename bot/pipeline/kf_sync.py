"""微信客服 pull: turn one `kf_msg_or_event` callback into queued customer messages.

Runs in the worker, never in the web process: kf/sync_msg is a remote call of unknown length
and the callback must be answered at once (README §3). `workers.tasks.handle_message` hands
the callback's trigger message here instead of to `bot.pipeline`, so the agent never sees it;
the messages it queues then go through the pipeline like any platform's. Per `open_kfid`,
under a Redis lock:

1. read the saved cursor ``kf:cursor:{app}:{open_kfid}``;
2. page through kf/sync_msg while ``has_more``;
3. hand every customer text (and each ``enter_session`` event) to `bot.intake.accept`, which
   dedupes on msgid, gives the turn ticket and queues it like any webhook message;
4. save the page's ``next_cursor`` only after every item of that page is queued.

Session status changes are recorded (``kf:human:…``): while a human servicer holds a
session, its customer's messages are not queued, so the bot stays silent. `hand_to_human`
is the handoff hook that the agent can call (kf/service_state/trans).

A crash or a failed queue before step 4 re-reads the page on the task's retry; the msgid
dedupe makes that harmless (README §8 pitfall 12: never lose the read position, never
re-answer history).
"""

from __future__ import annotations

import logging

import aiohttp
import redis.asyncio as aioredis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError

from adapters.wecom_kf.adapter import (
    SESSION_STATUS_CHANGE,
    STATE_HUMAN,
    STATE_QUEUE,
    SYNC_EVENT,
    KfItem,
    WeComKfAdapter,
)
from bot import wiring
from bot.domain import InboundMessage, MessageKind, Platform
from bot.errors import TransientError
from bot.pipeline.intake import IntakeUnavailableError, accept
from bot.settings import Settings

log = logging.getLogger(__name__)

CURSOR_TTL_S = 180 * 24 * 3600  # a quiet account keeps its place for half a year
LOCK_TTL_S = 120.0
LOCK_WAIT_S = 60.0
MAX_PAGES = 100  # 100 000 messages per callback; a cursor that never ends is a bug
HUMAN_TTL_S = 48 * 3600  # WeCom ends idle sessions; the flag must not outlive them for good
# session_status_change.change_type: 1 a servicer took it from the pool, 2 transferred,
# 3 ended, 4 a servicer re-opened an ended or transferred session (kf 接收消息和事件 page).
_HUMAN_CHANGES = frozenset({1, 2, 4})
_ENDED = 3


def is_sync_trigger(msg: InboundMessage) -> bool:
    """True for the callback's "pull now" message, which is synced, never answered."""
    return (
        msg.platform is Platform.WECOM_KF
        and msg.kind is MessageKind.EVENT
        and msg.meta.get("event") == SYNC_EVENT
    )


async def run(msg: InboundMessage, settings: Settings) -> str:
    """Sync for one trigger message in its own clients (one event loop per task)."""
    redis = aioredis.Redis.from_url(
        settings.core.redis_url, socket_connect_timeout=3, socket_timeout=10
    )
    try:
        adapter = wiring.sender_for(msg.platform, msg.app, settings, redis)
        if not isinstance(adapter, WeComKfAdapter):
            log.error(
                "no 微信客服 adapter for %s on this worker; %s dropped", msg.app, msg.event_id
            )
            return "unroutable"
        timeout = aiohttp.ClientTimeout(total=30, connect=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            return await sync_and_queue(msg, redis=redis, http=http, adapter=adapter)
    except KeyError:
        log.error("wecom_kf %s is not configured on this worker; %s dropped", msg.app, msg.event_id)
        return "unroutable"
    except aioredis.RedisError as exc:
        raise TransientError(f"redis unavailable: {exc}") from exc
    finally:
        await redis.aclose()


def cursor_key(app: str, open_kfid: str) -> str:
    return f"kf:cursor:{app}:{open_kfid}"


def human_key(app: str, open_kfid: str, external_userid: str) -> str:
    """Set while a human servicer holds the customer's session: the bot stays silent."""
    return f"kf:human:{app}:{open_kfid}:{external_userid}"


async def hand_to_human(
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    adapter: WeComKfAdapter,
    *,
    open_kfid: str,
    external_userid: str,
    servicer_userid: str = "",
) -> None:
    """The human handoff hook: move the session to a servicer (or the queue), stop the bot.

    With a servicer the session goes to state 3 (a human); without one to state 2 (the
    queue), where WeCom assigns it. Raises the adapter's errors when WeCom refuses.
    """
    await adapter.transfer(
        http,
        open_kfid=open_kfid,
        external_userid=external_userid,
        service_state=STATE_HUMAN if servicer_userid else STATE_QUEUE,
        servicer_userid=servicer_userid,
    )
    await redis.set(human_key(adapter.app, open_kfid, external_userid), "1", ex=HUMAN_TTL_S)


async def _record_session_change(redis: aioredis.Redis, app: str, item: KfItem) -> None:
    key = human_key(app, item.open_kfid, item.external_userid)
    if item.change_type in _HUMAN_CHANGES:
        await redis.set(key, "1", ex=HUMAN_TTL_S)
    elif item.change_type == _ENDED:
        await redis.delete(key)
    log.info(
        "wecom_kf %s %s session of %s changed (%d)",
        app,
        item.msgid,
        item.external_userid,
        item.change_type,
    )


async def sync_and_queue(
    msg: InboundMessage,
    *,
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    adapter: WeComKfAdapter,
) -> str:
    """Pull everything new for the trigger's open_kfid and queue it; returns "synced:N"."""
    open_kfid = msg.meta["open_kfid"]
    sync_token = msg.meta.get("sync_token", "")
    key = cursor_key(msg.app, open_kfid)
    # One puller per account: two would read the same cursor and race to save theirs. A
    # second callback waits, then starts from the cursor the first one saved.
    lock = Lock(
        redis,
        f"lock:kf:{msg.app}:{open_kfid}",
        timeout=LOCK_TTL_S,
        blocking_timeout=LOCK_WAIT_S,
    )
    if not await lock.acquire():
        raise TransientError(f"kf sync of {open_kfid} stayed busy", Platform.WECOM_KF.value)
    queued = 0
    try:
        raw = await redis.get(key)
        cursor = raw.decode("utf-8") if isinstance(raw, bytes) else (raw or "")
        for _ in range(MAX_PAGES):
            page = await adapter.sync(
                http, open_kfid=open_kfid, sync_token=sync_token, cursor=cursor
            )
            for item in page.items:
                if item.msgtype == "event" and item.event_type == SESSION_STATUS_CHANGE:
                    await _record_session_change(redis, msg.app, item)
                    continue
                if await redis.exists(human_key(msg.app, item.open_kfid, item.external_userid)):
                    log.info("wecom_kf %s %s: a human holds the session", msg.app, item.msgid)
                    continue
                inbound = adapter.inbound(item)
                if inbound is None:
                    continue
                try:
                    if await accept(redis, inbound):
                        queued += 1
                except IntakeUnavailableError as exc:
                    # The cursor stays where it was: the retry re-reads this page.
                    raise TransientError(f"kf queue: {exc}", Platform.WECOM_KF.value) from exc
            if page.next_cursor and page.next_cursor != cursor:
                cursor = page.next_cursor
                await redis.set(key, cursor, ex=CURSOR_TTL_S)
            if not page.has_more:
                break
            await lock.reacquire()  # a long backlog: keep the lock for another page
        else:
            log.warning("wecom_kf %s %s: stopped after %d pages", msg.app, open_kfid, MAX_PAGES)
    finally:
        try:
            await lock.release()
        except LockError:
            log.warning("kf sync lock of %s expired before release", open_kfid)
    log.info("wecom_kf %s %s synced %s: %d queued", msg.app, msg.event_id, open_kfid, queued)
    return f"synced:{queued}"
