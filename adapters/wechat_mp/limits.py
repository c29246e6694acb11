"""What ``message/custom/send`` will refuse, remembered in Redis so we do not call in vain.

Protocol docs/protocols/wechat-mp.md#customer-service-messages: a customer-service message may be
sent only after the follower wrote to us: at most 5 within 48 h of a message, 3 within 1 min of a
menu click, subscribe or scan (a newer trigger replaces the older one). Outside the window
WeChat answers 45015, past the quota 45047; an account without 客服消息 permission answers
48001 to every call.

* 48001 (or ``WECHAT_MP_CUSTOM_API=false``) is remembered per app for a day (permission can
  be granted later, e.g. after verification); meanwhile answers are *deferred*: kept in the
  per-follower list ``passive:pending:wechat_mp:{app}:{openid}`` that bot/pipeline/passive.py puts
  in front of the passive reply to the follower's next message, with a one-line notice.
* 45015 / 45047, answered or predicted from our own per-follower record
  (``mp:cs:{app}:{openid}``: the trigger replied to, its time and kind, the messages used),
  are logged, counted in ``bot_wechat_mp_custom_send_refusals_total`` and not retried.

`CustomSendLimits.send` wraps the adapter's one call of the API with all of this.

The record only sees triggers that we answer through this API (a passive reply costs no
quota), so it may under-count; it never blocks a send the real quota would allow for the
newest trigger, and the real errcode still catches what it missed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from prometheus_client import Counter

from bot import keys
from bot.domain import Platform, Reply
from bot.errors import PlatformRejectedError

log = logging.getLogger(__name__)

OUT_OF_WINDOW = 45015
QUOTA_USED = 45047
NO_PERMISSION = 48001
REFUSED = frozenset({OUT_OF_WINDOW, QUOTA_USED, NO_PERMISSION})
DEFERRED_ID = "deferred"  # the "platform id" of a part kept for the follower's next message
PENDING_MAX = 20  # per follower; older deferred answers are dropped first
QUESTION_CHARS = 20  # how much of the question the notice quotes
# trigger kind -> (window seconds, messages allowed),
# docs/protocols/wechat-mp.md#customer-service-messages.
LIMITS = {"message": (48 * 3600, 5), "event": (60, 3)}

REFUSALS = Counter(
    "bot_wechat_mp_custom_send_refusals_total",
    "Official Account customer-service messages refused (45015 window, 45047 quota, 48001 "
    "no permission), by app and errcode; predicted=1: not sent because our record knew.",
    ["app", "errcode", "predicted"],
)
DEFERRED = Counter(
    "bot_wechat_mp_deferred_total",
    "Answer parts kept for the follower's next message (no customer-service permission).",
    ["app"],
)

# KEYS: record. ARGV: trigger time, trigger kind, ttl. A newer trigger resets the count.
# Returns {trigger time, kind, used}.
_OBSERVE = """
local at = tonumber(redis.call('HGET', KEYS[1], 'at') or '0')
if tonumber(ARGV[1]) > at then
  redis.call('HSET', KEYS[1], 'at', ARGV[1], 'kind', ARGV[2], 'used', 0)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {redis.call('HGET', KEYS[1], 'at'), redis.call('HGET', KEYS[1], 'kind'),
        redis.call('HGET', KEYS[1], 'used')}
"""


def pending_key(app: str, openid: str) -> str:
    """Where deferred answers for one follower wait (read by bot/pipeline/passive.py)."""
    return keys.passive_pending(Platform.WECHAT_MP.value, app, openid)


def _int(value: str) -> int:
    return int(value) if value.isascii() and value.isdigit() else 0


def _text(value: bytes | str | int | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


class CustomSendLimits:
    """One account's knowledge of customer-service refusals, per app and per follower."""

    def __init__(self, redis: aioredis.Redis, app: str) -> None:
        self._redis = redis
        self._app = app

    def _record_key(self, openid: str) -> str:
        return keys.mp_customer_service(self._app, openid)

    async def api_refused(self) -> bool:
        """True when 48001 was answered recently: do not call, defer instead."""
        return bool(await self._redis.exists(keys.mp_no_custom_api(self._app)))

    async def learn_refused(self) -> None:
        log.warning(
            "wechat_mp %s has no customer-service permission (48001): answers that miss the "
            "passive reply wait for the follower's next message for %d h",
            self._app,
            keys.MP_NO_API_TTL_S // 3600,
        )
        await self._redis.set(keys.mp_no_custom_api(self._app), "48001", ex=keys.MP_NO_API_TTL_S)

    async def predict(self, openid: str, trigger_at: int, kind: str, *, now: float) -> int:
        """0 when a send may succeed, else the errcode WeChat would answer (45015 / 45047)."""
        if trigger_at <= 0:
            return 0  # unknown trigger time (an old queued message): let WeChat decide
        at_raw, kind_raw, used_raw = await self._redis.eval(  # type: ignore[misc]
            _OBSERVE, 1, self._record_key(openid), trigger_at, kind, keys.MP_RECORD_TTL_S
        )
        window_s, allowed = LIMITS.get(_text(kind_raw), LIMITS["message"])
        if now - int(_text(at_raw) or 0) > window_s:
            return OUT_OF_WINDOW
        if int(_text(used_raw) or 0) >= allowed:
            return QUOTA_USED
        return 0

    async def count_sent(self, openid: str) -> None:
        await self._redis.hincrby(self._record_key(openid), "used", 1)  # type: ignore[misc]

    async def learn_exhausted(self, openid: str) -> None:
        """WeChat answered 45015/45047: later parts for this trigger are not tried."""
        await self._redis.hset(self._record_key(openid), "used", 1 << 30)  # type: ignore[misc]

    async def defer(self, openid: str, question: str, text: str) -> None:
        """Keep `text` for the follower's next message (bot/pipeline/passive.py delivers it)."""
        key = pending_key(self._app, openid)
        item = json.dumps({"q": question[:QUESTION_CHARS], "text": text}, ensure_ascii=False)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, item)
            pipe.ltrim(key, -PENDING_MAX, -1)
            pipe.expire(key, keys.PASSIVE_PENDING_TTL_S)
            await pipe.execute()
        DEFERRED.labels(self._app).inc()

    async def send(
        self, reply: Reply, send_text: Callable[[], Awaitable[None]], *, custom_api: bool
    ) -> str:
        """Call `send_text` for `reply` unless it is known to fail; "" or ``deferred``."""
        openid = reply.recipient_id
        if not custom_api or await self.api_refused():
            return await self._defer(reply)
        predicted = await self.predict(
            openid,
            _int(reply.route.get("create_time", "")),
            reply.route.get("via", "message"),
            now=time.time(),
        )
        if predicted:
            REFUSALS.labels(self._app, str(predicted), "1").inc()
            log.warning(
                "wechat_mp %s: not sending to %s, errcode %s expected (%s)",
                self._app,
                openid,
                predicted,
                "48 h window closed" if predicted == OUT_OF_WINDOW else "quota used",
            )
            raise PlatformRejectedError(
                "message/custom/send would be refused", Platform.WECHAT_MP, predicted
            )
        try:
            await send_text()
        except PlatformRejectedError as exc:
            if exc.errcode in REFUSED:
                REFUSALS.labels(self._app, str(exc.errcode), "0").inc()
            if exc.errcode == NO_PERMISSION:
                await self.learn_refused()
                return await self._defer(reply)
            if exc.errcode in REFUSED:
                await self.learn_exhausted(openid)
            raise
        await self.count_sent(openid)
        return ""

    async def _defer(self, reply: Reply) -> str:
        await self.defer(reply.recipient_id, reply.route.get("question", ""), reply.text)
        log.info(
            "wechat_mp %s: answer to %s kept for the follower's next message",
            self._app,
            reply.in_reply_to,
        )
        return DEFERRED_ID
