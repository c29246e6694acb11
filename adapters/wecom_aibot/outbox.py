"""Frames for the long connection, from the worker to the replica holding the socket.

Only the holder (`bot stream wecom_aibot`) can write to the WeCom socket, and any worker may
produce an answer, so answers meet in a Redis list per bot: workers RPUSH
``aibot_respond_msg`` frames, the holder BLPOPs and sends them in order. Frames expire with
the req_id they answer (docs/protocols/wecom-aibot.md#long-connection-mode).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis

RESPOND = "aibot_respond_msg"
# A req_id answers for about 5 minutes after its callback (unconfirmed; see the notes).
REQ_ID_WINDOW_S = 300
OUTBOX_TTL_S = REQ_ID_WINDOW_S


def outbox_key(app: str) -> str:
    """The Redis list of frames waiting to be sent on `app`'s connection."""
    return f"wecom_aibot:{app}:outbox"


def respond_frame(req_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """An answer to the callback `req_id` (body: a `stream` message, the whole text so far)."""
    return {"cmd": RESPOND, "headers": {"req_id": req_id}, "body": dict(body)}


async def push(redis: aioredis.Redis, app: str, req_id: str, body: Mapping[str, Any]) -> None:
    """Queue one answer frame for whichever replica holds `app`'s connection."""
    key = outbox_key(app)
    frame = json.dumps(respond_frame(req_id, body), ensure_ascii=False)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.rpush(key, frame)
        pipe.expire(key, OUTBOX_TTL_S)
        await pipe.execute()
