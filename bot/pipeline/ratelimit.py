"""Per-user rate limit: messages per minute and per day (`BOT_RATE_PER_MINUTE`, `_PER_DAY`).

A user is (platform, app, sender). Each window is a sliding log in a Redis sorted set (member:
the message's event id, score: arrival in ms), so a window is exact at any instant and a
redelivered message is never counted twice. The check is one Lua script (atomic across
workers), and its decision is stored per message, so a retried task decides the same.

Over the limit, the user gets ONE polite notice per window and later over-limit messages
are stored but not answered: an abusive user must not make us spend the model budget, nor
the platform's send quota (WeCom, 微信客服 and MP limit how many messages we may send),
on notices. Over-limit messages are not added to the log, so a user who stops is let in
again once their accepted messages age out of the window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from bot import keys
from bot.domain import InboundMessage
from bot.lua import LuaScript

NOTICE_TEXT = {
    "minute": "您发送消息过于频繁，请稍后再试。",
    "day": "您今天的咨询次数已达上限，请明天再来，或留言等待人工客服处理。",
}
MINUTE_MS = 60_000
DAY_MS = 86_400_000

# KEYS: minute log, day log, decision, minute notice flag, day notice flag.
# ARGV: now ms, member, per minute, per day, decision ttl.
# Returns "ok", "notice:<window>" or "silent:<window>".
_CHECK = """
local decided = redis.call('GET', KEYS[3])
if decided then return decided end
local now = tonumber(ARGV[1])
local per_minute, per_day = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 86400000)
local window = ''
if per_minute > 0 and redis.call('ZCARD', KEYS[1]) >= per_minute then
  window = 'minute'
elseif per_day > 0 and redis.call('ZCARD', KEYS[2]) >= per_day then
  window = 'day'
end
local result
if window == '' then
  if per_minute > 0 then
    redis.call('ZADD', KEYS[1], now, ARGV[2])
    redis.call('PEXPIRE', KEYS[1], 60000)
  end
  if per_day > 0 then
    redis.call('ZADD', KEYS[2], now, ARGV[2])
    redis.call('PEXPIRE', KEYS[2], 86400000)
  end
  result = 'ok'
else
  local flag, ttl = KEYS[4], 60000
  if window == 'day' then flag, ttl = KEYS[5], 86400000 end
  if redis.call('SET', flag, '1', 'NX', 'PX', ttl) then
    result = 'notice:' .. window
  else
    result = 'silent:' .. window
  end
end
redis.call('SET', KEYS[3], result, 'EX', ARGV[5])
return result
"""
_CHECK_SCRIPT = LuaScript(_CHECK)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    notify: bool = False  # over the limit and the first time in this window: send a notice
    window: str = ""  # "minute" or "day" when over the limit

    @property
    def silent(self) -> bool:
        """Over the limit and already told: store the message, answer nothing."""
        return not self.allowed and not self.notify

    @property
    def notice(self) -> str:
        return NOTICE_TEXT.get(self.window, NOTICE_TEXT["minute"])


ALLOWED = Decision(allowed=True)


async def check(
    redis: aioredis.Redis,
    msg: InboundMessage,
    *,
    per_minute: int,
    per_day: int,
    now: float | None = None,
) -> Decision:
    """Count `msg` against its sender's limits; 0 turns a limit off."""
    if per_minute <= 0 and per_day <= 0:
        return ALLOWED
    now_ms = int((time.time() if now is None else now) * 1000)
    raw = await _CHECK_SCRIPT(
        redis,
        keys.rate_keys(msg),
        (now_ms, msg.event_id, per_minute, per_day, keys.RATE_DECISION_TTL_S),
    )
    result = raw.decode() if isinstance(raw, bytes) else str(raw)
    if result == "ok":
        return ALLOWED
    action, _, window = result.partition(":")
    return Decision(allowed=False, notify=action == "notice", window=window)
