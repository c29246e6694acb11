"""What the streaming replies of every platform share: the throttle, the sink that turns the
model's pieces into card updates, and the sweeper's core with its notes.

A platform plugs in its calls: a streaming-card adapter (Feishu CardKit cards, DingTalk AI
cards) subclasses `CardSink` and says how its card is opened and updated; a platform's
sweeper (adapters/*/sweep.py) lists what dead turns left open and says how one is ended,
and `sweep_open` does the rest (one claim per card across the fleet, the closing text, the
end state that keeps a late turn from adding a second answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol, TypeVar

import aiohttp
import redis.asyncio as aioredis

from bot.domain import STREAM_RESTART, OnDelta, Platform, Reply
from bot.errors import BotError, PermanentError

log = logging.getLogger(__name__)

# What the member reads at the end of a card or stream whose turn died: one voice on every
# platform.
CUT_NOTE = "（回答中断了，以上是已生成的部分。如需完整答复，请再发一次您的问题。）"
NOTHING_NOTE = "抱歉，这条消息没能及时回答，请再发一次您的问题。"
# The most updates a second any platform takes on one card (Feishu: 10 per card).
MAX_UPDATES_PER_S = 10.0


def closing_text(so_far: str) -> str:
    """What a card or stream shows at the end of a turn that died."""
    so_far = so_far.strip()
    return f"{so_far}\n\n{CUT_NOTE}" if so_far else NOTHING_NOTE


class Throttle:
    """At most `per_s` updates per second (never above `cap`); pure, clock passed in."""

    def __init__(self, per_s: float, cap: float = MAX_UPDATES_PER_S) -> None:
        self.interval = 1.0 / min(max(per_s, 0.1), cap)
        self._last = float("-inf")

    def wait(self, now: float) -> float:
        """Seconds until the next update may go out (0: now)."""
        return max(0.0, self._last + self.interval - now)

    def due(self, now: float) -> bool:
        """True (and counted) when an update may go out at `now`."""
        if now - self._last < self.interval:
            return False
        self._last = now
        return True

    def mark(self, now: float) -> None:
        """An update went out at `now` (one the caller sent when `wait` said)."""
        self._last = now


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# --- each message's card state in Redis -----------------------------------------------------


class CardStates:
    """What the card stores of every platform share: one hash per message's card (`_key`),
    the open cards in a sorted set by their last sign of life (`open_set`, what the sweeper
    lists), and a flag that turns the app's cards off for a while (`_off_key`)."""

    open_set: ClassVar[str]
    ttl_s: ClassVar[int]
    off_ttl_s: ClassVar[int]

    def __init__(self, redis: aioredis.Redis, app: str) -> None:
        self._redis = redis
        self._app = app

    def _key(self, event_id: str) -> str:
        raise NotImplementedError

    def _off_key(self) -> str:
        raise NotImplementedError

    def _member(self, event_id: str) -> str:
        return f"{self._app}:{event_id}"

    async def showing(self, event_id: str, text: str) -> None:
        """The text the card is about to show (what a sweeper would finish it with), noted
        before the update goes out: a worker killed after the update leaves no piece behind.
        Not a sign of life: the update may still fail (see `alive`)."""
        await self._redis.hset(self._key(event_id), "text", text)

    async def alive(self, event_id: str) -> None:
        """An update went through: the turn is alive (the sweeper leaves the card alone)."""
        await self._redis.zadd(self.open_set, {self._member(event_id): time.time()}, xx=True)

    async def finish(self, event_id: str, text: str, status: str = "done") -> None:
        """The card's end (`status` done, or swept by the sweeper) with its final text."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(event_id), mapping={"status": status, "final": text})
            pipe.zrem(self.open_set, self._member(event_id))
            await pipe.execute()

    async def forget(self, event_id: str) -> None:
        """The card was never shown: the message is answered without one."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(event_id))
            pipe.zrem(self.open_set, self._member(event_id))
            await pipe.execute()

    async def claim_for_sweep(self, event_id: str) -> bool:
        """True for exactly one caller, across processes: the one sweeper that ends this card."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self._key(event_id), "swept", "1")
            # The state may have expired since the listing: never leave a hash without a TTL.
            pipe.expire(self._key(event_id), self.ttl_s)
            claimed, _ = await pipe.execute()
        return bool(claimed)

    async def release_sweep(self, event_id: str) -> None:
        """The claimed card could not be ended now (the platform down): a later round may."""
        await self._redis.hdel(self._key(event_id), "swept")

    async def cards_off(self) -> bool:
        return bool(await self._redis.exists(self._off_key()))

    async def turn_cards_off(self, reason: str) -> None:
        await self._redis.set(self._off_key(), reason[:200], ex=self.off_ttl_s)


# --- the sink: streamed pieces into a card ---------------------------------------------------


class CardSink:
    """The streaming half of a card adapter: each message's card is created on the first
    words, then gets the full text so far at most `updates_per_s` times a second; words the
    throttle held back show up when it allows, even if the model pauses. A restart
    (STREAM_RESTART) clears the card at once. The platform says how a card is opened
    (`_open_card`) and updated (`_update_card`)."""

    platform: ClassVar[Platform]
    app: str

    def _start_sink(self, updates_per_s: float, clock: Callable[[], float]) -> None:
        self._updates_per_s = updates_per_s
        self._clock = clock
        # The process's session (`use_session`): the sink has no other way to reach the API.
        self._http: aiohttp.ClientSession | None = None
        # Per message, the update that will show words the throttle held back; `send`
        # cancels it before the final text (`_stop_trailing`).
        self._trailing: dict[str, asyncio.Task[None]] = {}

    def use_session(self, http: aiohttp.ClientSession) -> None:
        self._http = http

    # --- the platform's part -------------------------------------------------------------

    async def _open_card(self, http: aiohttp.ClientSession, reply: Reply, shown: str) -> str | None:
        """The message's card, in the chat and showing `shown`: its id for updates. None:
        this attempt does not stream (the answer's `send` decides how it goes out)."""
        raise NotImplementedError

    async def _update_card(
        self, http: aiohttp.ClientSession, event_id: str, card: str, shown: str
    ) -> None:
        """The card's full text (the client types out the difference)."""
        raise NotImplementedError

    def _shown(self, reply: Reply, text: str) -> str:  # noqa: ARG002
        """What the card shows for the answer's `text` (Feishu puts the @asker first)."""
        return text

    def _gives_up(self, exc: BotError) -> bool:  # noqa: ARG002
        """True: a failure opening the card ends streaming for this attempt."""
        return False

    # --- the shared part -----------------------------------------------------------------

    def delta_sink(self, reply: Reply) -> OnDelta:
        """Streamed model output goes into the message's card (created on the first words)."""
        event_id = reply.in_reply_to
        throttle = Throttle(self._updates_per_s)
        text = ""
        card: str | None = None
        given_up = False
        updated = ""  # what the last update showed
        name = self.platform.value

        async def update(http: aiohttp.ClientSession, card: str) -> None:
            nonlocal updated
            shown = self._shown(reply, text)
            await self._update_card(http, event_id, card, shown)
            updated = shown

        async def trailing(http: aiohttp.ClientSession, card: str, delay: float) -> None:
            # Words held back by the throttle show up when it allows, even if the model
            # pauses (a tool call) and no further piece comes to carry them.
            await asyncio.sleep(delay)
            if self._shown(reply, text) != updated and throttle.due(self._clock()):
                try:
                    await update(http, card)
                except BotError as exc:
                    log.info("%s %s card update for %s skipped: %s", name, self.app, event_id, exc)

        async def sink(piece: str) -> None:
            nonlocal text, card, given_up, updated
            if given_up:
                return
            text = "" if piece == STREAM_RESTART else text + piece
            if card is None and not text.strip():
                return  # no card for whitespace alone
            http = self._http
            if http is None or http.closed:
                given_up = True  # no session handed over: the answer goes out without a card
                return
            try:
                if card is None:
                    shown = self._shown(reply, text)
                    card = await self._open_card(http, reply, shown)
                    if card is None:
                        given_up = True
                        return
                    throttle.due(self._clock())  # the card shows this text already
                    updated = shown
                    return
                now = self._clock()
                if piece == STREAM_RESTART or throttle.due(now):
                    await update(http, card)
                elif event_id not in self._trailing:
                    task = asyncio.create_task(trailing(http, card, throttle.wait(now)))
                    self._trailing[event_id] = task
                    task.add_done_callback(lambda _: self._trailing.pop(event_id, None))
            except BotError as exc:
                # An update that fails (429, a timeout) is carried by the next one, or by
                # the final text.
                log.info("%s %s card update for %s skipped: %s", name, self.app, event_id, exc)
                if card is None and self._gives_up(exc):
                    given_up = True

        return sink

    async def _stop_trailing(self, event_id: str) -> None:
        """No held-back update may land after the final text (it would show an older one)."""
        task = self._trailing.pop(event_id, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# --- the sweeper's core ----------------------------------------------------------------------


class Left(Protocol):
    """What a dead turn left open, as its store reads it."""

    @property
    def text(self) -> str: ...

    @property
    def done(self) -> bool: ...


L = TypeVar("L", bound=Left)
L_co = TypeVar("L_co", bound=Left, covariant=True)


class SweptStore(Protocol[L_co]):
    """One app's open cards (or streams) as the sweeper handles them."""

    async def get(self, key: str) -> L_co | None: ...

    async def claim_for_sweep(self, key: str) -> bool: ...

    async def release_sweep(self, key: str) -> None: ...

    async def finish(self, key: str, text: str, status: str) -> None: ...


async def idle(
    redis: aioredis.Redis,
    open_set: str,
    state_key: Callable[[str, str], str],
    before: float,
    limit: int = 100,
) -> list[tuple[str, str]]:
    """(app, id) of the members of `open_set` (a sorted set of ``app:id`` by last write)
    written before `before`, oldest first: what a sweeper ends. Members whose state
    (`state_key(app, id)`) expired are dropped on the way."""
    members = await redis.zrangebyscore(open_set, "-inf", before, start=0, num=limit)
    found = []
    for member in members:
        name = _text(member)
        app, _, key = name.partition(":")
        if await redis.exists(state_key(app, key)):
            found.append((app, key))
        else:
            await redis.zrem(open_set, name)
    return found


async def sweep_open(
    found: list[tuple[str, str]],
    store: Callable[[str], SweptStore[L] | None],
    end: Callable[[str, str, L, str], Awaitable[None]],
    *,
    what: str,
    swept: str,
    retry_when_down: bool,
) -> int:
    """End each (app, id) in `found` with the text so far and the note: `store(app)` (None:
    an app this process does not have, left to another round or worker) claims it, once
    across the fleet; `end(app, id, state, text)` shows `text` on the platform; the state is
    then finished as `swept`, so a turn that comes back late adds no second answer. A
    refusal is final; a platform that is down (`retry_when_down`) leaves the card to the next
    round. `what` names the thing in logs ("feishu card"). How many were ended."""
    ended = 0
    for app, key in found:
        st = store(app)
        if st is None or not await st.claim_for_sweep(key):
            continue  # not this process's app, or another worker's sweeper has it
        left = await st.get(key)
        if left is None or left.done:
            continue  # finished between the listing and the claim
        text = closing_text(left.text)
        try:
            await end(app, key, left, text)
        except PermanentError as exc:
            # Refused for good: the state still says swept, so a late turn stays quiet.
            log.warning("%s %s of %s: ending refused: %s", what, app, key, exc)
        except BotError as exc:
            if retry_when_down:
                await st.release_sweep(key)  # down or busy: the next round tries again
                log.warning("%s %s of %s: ending failed, next round: %s", what, app, key, exc)
                continue
            log.warning("%s %s of %s: ending failed: %s", what, app, key, exc)
        await st.finish(key, text, swept)
        log.warning("%s %s of %s: ended, left open by a turn that died", what, app, key)
        ended += 1
    return ended
