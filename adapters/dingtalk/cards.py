"""DingTalk AI cards: the request bodies and each message's card state in Redis.

One card instance per message, named by its `outTrackId` (ours to choose: derived from the
app and the message, so every attempt at the same message names the same card). Its state
lives in Redis (bot/keys.py `dingtalk_card`) so a turn redelivered after a worker crash
continues the card instead of sending a second one, and so the sweeper
(adapters/dingtalk/sweep.py) can finish a card whose turn died. Fields: `out_track_id`,
`status` (pending: createAndDeliver asked, answer unknown → open → done | swept), `text`
(what the card shows so far) and `final`. Protocol notes: docs/protocols/dingtalk.md#ai-cards.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from adapters import cards as shared
from bot import keys

PENDING = "pending"  # createAndDeliver was asked; whether the card exists is not known
OPEN = "open"
DONE = "done"
SWEPT = "swept"  # finished by the sweeper: the turn behind it died

# flowStatus of the AI card template (a string in cardParamMap).
FLOW_PROCESSING = "1"
FLOW_INPUTING = "2"
FLOW_FINISHED = "3"
FLOW_FAILED = "5"

CREATE_PATH = "/v1.0/card/instances/createAndDeliver"
STREAMING_PATH = "/v1.0/card/streaming"
INSTANCES_PATH = "/v1.0/card/instances"


def out_track_id(app: str, event_id: str) -> str:
    """The card's id for this message: the same on every attempt (≤ 64 chars, URL-safe)."""
    return hashlib.sha256(f"{app}\n{event_id}".encode()).hexdigest()[:40]


def create_body(
    *,
    template_id: str,
    track_id: str,
    content_key: str,
    text: str,
    robot_code: str,
    is_group: bool,
    conversation_id: str,
    staff_id: str,
    nick: str = "",
) -> dict[str, Any]:
    """createAndDeliver: the card with its first words, in the group (@asker) or the 1:1 chat."""
    body: dict[str, Any] = {
        "cardTemplateId": template_id,
        "outTrackId": track_id,
        "cardData": {"cardParamMap": {content_key: text, "flowStatus": FLOW_INPUTING}},
        "userIdType": 1,  # staff userid
    }
    if is_group:
        deliver: dict[str, Any] = {"robotCode": robot_code}
        if staff_id:
            deliver["atUserIds"] = {staff_id: nick or staff_id}
        body.update(
            openSpaceId=f"dtv1.card//IM_GROUP.{conversation_id}",
            imGroupOpenSpaceModel={"supportForward": True},
            imGroupOpenDeliverModel=deliver,
        )
    else:
        body.update(
            openSpaceId=f"dtv1.card//IM_ROBOT.{staff_id}",
            imRobotOpenSpaceModel={"supportForward": True},
            imRobotOpenDeliverModel={"spaceType": "IM_ROBOT", "robotCode": robot_code},
        )
    return body


def streaming_body(
    track_id: str, content_key: str, text: str, *, finalize: bool = False, error: bool = False
) -> dict[str, Any]:
    """One streaming update: the full text so far (isFull), a fresh guid every time."""
    return {
        "outTrackId": track_id,
        "guid": uuid.uuid4().hex,
        "key": content_key,
        "content": text,
        "isFull": True,
        "isFinalize": finalize,
        "isError": error,
    }


def status_body(track_id: str, content_key: str, text: str, flow_status: str) -> dict[str, Any]:
    """The card's end state (FINISHED or FAILED) with its final text, by key."""
    return {
        "outTrackId": track_id,
        "cardData": {"cardParamMap": {content_key: text, "flowStatus": flow_status}},
        "cardUpdateOptions": {"updateCardDataByKey": True},
    }


def deliver_failure(data: dict[str, Any]) -> str:
    """What createAndDeliver says went wrong delivering (its HTTP status is 200); "" if nothing."""
    result = data.get("result")
    results = result.get("deliverResults") if isinstance(result, dict) else None
    for item in results if isinstance(results, list) else []:
        if isinstance(item, dict) and item.get("success") is False:
            return str(item.get("errorMsg") or "not delivered")[:200]
    return ""


@dataclass(frozen=True, slots=True)
class Card:
    """One message's card as Redis holds it."""

    out_track_id: str
    status: str
    text: str
    final: str

    @property
    def done(self) -> bool:
        return self.status in (DONE, SWEPT)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


_FIELDS = ("out_track_id", "status", "text", "final")


class CardStore(shared.CardStates):
    """The AI cards of one app, and whether the app may use cards at all."""

    open_set = keys.DINGTALK_OPEN_CARDS
    ttl_s = keys.DINGTALK_CARD_TTL_S
    off_ttl_s = keys.DINGTALK_CARDS_OFF_TTL_S

    def _key(self, event_id: str) -> str:
        return keys.dingtalk_card(self._app, event_id)

    def _off_key(self) -> str:
        return keys.dingtalk_cards_off(self._app)

    async def get(self, event_id: str) -> Card | None:
        track_id, status, text, final = (
            _text(v) for v in await self._redis.hmget(self._key(event_id), *_FIELDS)
        )
        if not track_id:
            return None
        return Card(out_track_id=track_id, status=status or PENDING, text=text, final=final)

    async def asked(self, event_id: str, track_id: str, text: str) -> None:
        """createAndDeliver is about to be asked: from now on the card may exist."""
        key = self._key(event_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "out_track_id", track_id)
            pipe.hsetnx(key, "status", PENDING)
            pipe.hset(key, "text", text)
            pipe.expire(key, keys.DINGTALK_CARD_TTL_S)
            pipe.zadd(self.open_set, {self._member(event_id): time.time()})
            await pipe.execute()

    async def opened(self, event_id: str) -> None:
        """createAndDeliver answered: the card is in the chat."""
        await self._redis.hset(self._key(event_id), "status", OPEN)


async def idle(redis: aioredis.Redis, before: float, limit: int = 100) -> list[tuple[str, str]]:
    """(app, event id) of open cards last written before `before`, oldest first: what the
    sweeper finishes. Members whose state expired are dropped on the way."""
    return await shared.idle(redis, keys.DINGTALK_OPEN_CARDS, keys.dingtalk_card, before, limit)
