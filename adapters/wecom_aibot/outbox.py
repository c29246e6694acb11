"""Frames for the long connection, from the worker to the replica holding the socket.

Only the holder (`bot stream wecom_aibot`) can write to the WeCom socket, and any worker may
produce an answer, so answers meet in a Redis list per bot: workers RPUSH
``aibot_respond_msg`` frames, the holder BLPOPs and sends them in order. Frames expire with
the req_id they answer (docs/protocols/wecom-aibot.md#long-connection-mode). An answer past
the req_id's life goes out as ``aibot_send_msg`` (a markdown message to the chat, bound to
no callback) through the same list.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis

RESPOND = "aibot_respond_msg"
SEND = "aibot_send_msg"
# aibot_send_msg's chat_type: 1 a single chat (chatid: the member's userid), 2 a group.
SINGLE_CHAT, GROUP_CHAT = 1, 2
# A req_id answers for about 5 minutes after its callback (unconfirmed; see the notes).
REQ_ID_WINDOW_S = 300
OUTBOX_TTL_S = REQ_ID_WINDOW_S


def outbox_key(app: str) -> str:
    """The Redis list of frames waiting to be sent on `app`'s connection."""
    return f"wecom_aibot:{app}:outbox"


def respond_frame(req_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """An answer to the callback `req_id` (body: a `stream` message, the whole text so far)."""
    return {"cmd": RESPOND, "headers": {"req_id": req_id}, "body": dict(body)}


def send_frame(chatid: str, *, is_group: bool, text: str) -> dict[str, Any]:
    """A message to the chat outside any callback (its own req_id): markdown, as the gateway
    takes no plain text there."""
    return {
        "cmd": SEND,
        "headers": {"req_id": f"{SEND}_{secrets.token_hex(8)}"},
        "body": {
            "chatid": chatid,
            "chat_type": GROUP_CHAT if is_group else SINGLE_CHAT,
            "msgtype": "markdown",
            "markdown": {"content": text},
        },
    }


async def push(redis: aioredis.Redis, app: str, req_id: str, body: Mapping[str, Any]) -> None:
    """Queue one answer frame for whichever replica holds `app`'s connection."""
    await _queue(redis, app, respond_frame(req_id, body))


async def push_send(
    redis: aioredis.Redis, app: str, chatid: str, *, is_group: bool, text: str
) -> None:
    """Queue an `aibot_send_msg` to the chat (an answer past its req_id's life)."""
    await _queue(redis, app, send_frame(chatid, is_group=is_group, text=text))


async def _queue(redis: aioredis.Redis, app: str, frame: Mapping[str, Any]) -> None:
    key = outbox_key(app)
    raw = json.dumps(frame, ensure_ascii=False)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.rpush(key, raw)
        pipe.expire(key, OUTBOX_TTL_S)
        await pipe.execute()
