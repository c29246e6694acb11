"""微信客服 pull: turn one `kf_msg_or_event` callback into queued customer messages.

The callback only says "pull now" (docs/protocols/wecom-kf.md): the worker, never the web
process, pages through kf/sync_msg for the callback's `open_kfid`, under a Redis lock:

1. read the saved cursor ``kf:cursor:{app}:{open_kfid}``;
2. page through kf/sync_msg while ``has_more``;
3. hand every customer message (and each ``enter_session`` event) to the queue, which
   dedupes on msgid, gives the turn ticket and queues it like any webhook message;
4. save the page's ``next_cursor`` only after every item of that page is queued.

Session status changes are recorded (``kf:human:…``): while a human servicer holds a session, its
customer's messages are not queued, so the bot stays silent. A crash or a failed queue before step 4
re-reads the page on the task's retry; the msgid dedupe makes that harmless (never lose the read
position, never re-answer history: docs/protocols/pitfalls.md#pitfall-12-the-wecom-kf-cursor).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError

from adapters.base import Queue
from adapters.wecom_kf.parse import SESSION_STATUS_CHANGE, KfItem, SyncPage
from bot import keys
from bot.domain import InboundMessage, Platform
from bot.errors import TransientError

log = logging.getLogger(__name__)

LOCK_WAIT_S = 60.0
MAX_PAGES = 100  # 100 000 messages per callback; a cursor that never ends is a bug
# session_status_change.change_type: 1 a servicer took it from the pool, 2 transferred,
# 3 ended, 4 a servicer re-opened an ended or transferred session (kf 接收消息和事件 page).
_HUMAN_CHANGES = frozenset({1, 2, 4})
_ENDED = 3

FetchPage = Callable[[str], Awaitable[SyncPage]]
ToMessage = Callable[[KfItem], InboundMessage | None]


async def mark_human(redis: aioredis.Redis, app: str, open_kfid: str, external: str) -> None:
    await redis.set(keys.kf_human(app, open_kfid, external), "1", ex=keys.KF_HUMAN_TTL_S)


async def clear_human(redis: aioredis.Redis, app: str, open_kfid: str, external: str) -> None:
    await redis.delete(keys.kf_human(app, open_kfid, external))


async def _record_session_change(redis: aioredis.Redis, app: str, item: KfItem) -> None:
    if item.change_type in _HUMAN_CHANGES:
        await mark_human(redis, app, item.open_kfid, item.external_userid)
    elif item.change_type == _ENDED:
        await clear_human(redis, app, item.open_kfid, item.external_userid)
    log.info(
        "wecom_kf %s %s session of %s changed (%d)",
        app,
        item.msgid,
        item.external_userid,
        item.change_type,
    )


async def pull(
    redis: aioredis.Redis,
    *,
    app: str,
    open_kfid: str,
    fetch_page: FetchPage,
    to_message: ToMessage,
    queue: Queue,
) -> int:
    """Pull everything new for `open_kfid` from its saved cursor and queue it."""
    key = keys.kf_cursor(app, open_kfid)
    # One puller per account: two would read the same cursor and race to save theirs. A
    # second callback waits, then starts from the cursor the first one saved.
    lock = Lock(
        redis,
        keys.kf_lock(app, open_kfid),
        timeout=keys.KF_LOCK_TTL_S,
        blocking_timeout=LOCK_WAIT_S,
    )
    if not await lock.acquire():
        raise TransientError(f"kf sync of {open_kfid} stayed busy", Platform.WECOM_KF.value)
    queued = 0
    try:
        raw = await redis.get(key)
        cursor = raw.decode("utf-8") if isinstance(raw, bytes) else (raw or "")
        for _ in range(MAX_PAGES):
            page = await fetch_page(cursor)
            for item in page.items:
                if item.msgtype == "event" and item.event_type == SESSION_STATUS_CHANGE:
                    await _record_session_change(redis, app, item)
                    continue
                if await redis.exists(keys.kf_human(app, item.open_kfid, item.external_userid)):
                    log.info("wecom_kf %s %s: a human holds the session", app, item.msgid)
                    continue
                message = to_message(item)
                # A failed queue raises: the cursor stays and the retry re-reads this page.
                if message is not None and await queue(message):
                    queued += 1
            if page.next_cursor and page.next_cursor != cursor:
                cursor = page.next_cursor
                await redis.set(key, cursor, ex=keys.KF_CURSOR_TTL_S)
            if not page.has_more:
                break
            await lock.reacquire()  # a long backlog: keep the lock for another page
        else:
            log.warning("wecom_kf %s %s: stopped after %d pages", app, open_kfid, MAX_PAGES)
    finally:
        try:
            await lock.release()
        except LockError:
            log.warning("kf sync lock of %s expired before release", open_kfid)
    return queued
