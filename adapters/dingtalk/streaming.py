"""DingTalk answers that type themselves: an AI card per message.

On when the app names a card template (DINGTALK_CARD_TEMPLATE_ID); without one, answers are
the markdown replies of `DingTalkAdapter`. The first streamed words create the card from the
template and deliver it (createAndDeliver: into the group with the asker @-mentioned, or
into the 1:1 chat with the robot); while the model writes, the template's content variable
gets the full text so far (PUT /v1.0/card/streaming, isFull, a fresh guid each time), at most
`card_updates_per_s` times a second; the answer's `send` writes the final text with
isFinalize and sets the card's flowStatus to FINISHED. A fallback model (STREAM_RESTART)
starts the card's text again.

State is in Redis (adapters/dingtalk/cards.py), so a turn redelivered after a worker crash
finishes the same card; a card whose turn never ends is finished by the sweeper
(adapters/dingtalk/sweep.py). A refused card (no card permission, an unknown template) turns
cards off for the app for a while (bot/keys.py DINGTALK_CARDS_OFF_TTL_S) with one log line:
answers go out as markdown replies. Protocol notes: docs/protocols/dingtalk.md#ai-cards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import aiohttp
import redis.asyncio as aioredis

from adapters.cards import CardSink
from adapters.dingtalk import cards
from adapters.dingtalk.adapter import DingTalkAdapter
from adapters.tokens import TokenCache
from bot import keys
from bot.domain import DEFAULT_APP, Reply
from bot.errors import BotError, ConfigError, PermanentError, PlatformUnavailableError

log = logging.getLogger(__name__)

# The permissions the card calls need (开发者后台 → 权限管理).
PERMISSIONS = "Card.Instance.Write and Card.Streaming.Write"


def _app_wide(exc: PermanentError) -> bool:
    """A refusal that every card of the app would get (permission, template), not one about
    this message (a user not found, content refused)."""
    code = str(exc.errcode or "").lower()
    return exc.status == 403 or "template" in code or "forbidden" in code


class DingTalkCardAdapter(CardSink, DingTalkAdapter):
    """A DingTalk app whose answers stream into AI cards (see the module)."""

    def __init__(
        self,
        *,
        app_key: str,
        app_secret: str,
        robot_code: str = "",
        token: str = "",
        aes_key: str = "",
        api_base: str,
        oapi_base: str = "https://oapi.dingtalk.com",
        tokens: TokenCache | None,
        app: str = DEFAULT_APP,
        http_timeout_s: float = 10,
        media_max_bytes: int = 0,
        media_timeout_s: float = 30.0,
        group_welcome_text: str = "",
        redis: aioredis.Redis | None = None,
        card_template_id: str = "",
        card_content_key: str = "content",
        card_updates_per_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Named one by one: the wiring passes each settings field the signature lists.
        super().__init__(
            app_key=app_key,
            app_secret=app_secret,
            robot_code=robot_code,
            token=token,
            aes_key=aes_key,
            api_base=api_base,
            oapi_base=oapi_base,
            tokens=tokens,
            app=app,
            http_timeout_s=http_timeout_s,
            media_max_bytes=media_max_bytes,
            media_timeout_s=media_timeout_s,
            group_welcome_text=group_welcome_text,
        )
        if not card_template_id:
            raise ConfigError(f"DingTalk app {app!r}: AI cards need a card template id")
        self._redis = redis
        self._template_id = card_template_id
        self._content_key = card_content_key or "content"
        self._start_sink(card_updates_per_s, clock)

    @property
    def _cards(self) -> cards.CardStore:
        if self._redis is None:
            raise ConfigError("DingTalk AI cards need Redis for their state")
        return cards.CardStore(self._redis, self.app)

    # --- while the model writes (adapters/cards.py CardSink) ------------------------------

    async def _update_card(
        self, http: aiohttp.ClientSession, event_id: str, card: str, shown: str
    ) -> None:
        await self._stream(http, event_id, card, shown)

    async def _open_card(self, http: aiohttp.ClientSession, reply: Reply, shown: str) -> str | None:
        found = await self._open(http, reply, shown)
        return None if found is None else found.out_track_id

    async def _open(
        self, http: aiohttp.ClientSession, reply: Reply, text: str
    ) -> cards.Card | None:
        """The message's card, in the chat: a redelivered turn's, or a new one. None: this
        attempt does not stream (`send` decides how the answer goes out)."""
        store = self._cards
        event_id = reply.in_reply_to
        found = await store.get(event_id)
        if found is not None:
            if found.done or found.status == cards.PENDING:
                return None  # finished, or not known to exist: `send` settles it
            # A new attempt at the answer (the turn was redelivered): start from its words.
            await self._stream(http, event_id, found.out_track_id, text)
            return found
        if await store.cards_off():
            return None
        track_id = cards.out_track_id(self.app, event_id)
        await store.asked(event_id, track_id, text)
        body = cards.create_body(
            template_id=self._template_id,
            track_id=track_id,
            content_key=self._content_key,
            text=text,
            robot_code=reply.route.get("robotCode") or self.robot_code,
            is_group=reply.is_group,
            conversation_id=reply.route.get("conversationId") or reply.conversation_id,
            staff_id=reply.route.get("senderStaffId") or reply.recipient_id,
            nick=reply.route.get("senderNick", ""),
        )
        try:
            data = await self.post(http, cards.CREATE_PATH, body)
            failure = cards.deliver_failure(data)
            if failure:
                raise PermanentError(f"card not delivered: {failure}", self.platform)
        except PermanentError as exc:
            await store.forget(event_id)
            if _app_wide(exc):
                await self._cards_refused(store, exc)
            else:
                log.info("dingtalk %s no card for %s: %s", self.app, event_id, exc)
            return None
        except BotError as exc:
            # The card may or may not exist (a timeout): it stays pending, and `send` finishes
            # it if it does, or answers in markdown if it does not.
            log.info("dingtalk %s card for %s not known to exist: %s", self.app, event_id, exc)
            return None
        await store.opened(event_id)
        log.info("dingtalk %s card of %s delivered", self.app, event_id)
        return await store.get(event_id)

    async def _cards_refused(self, store: cards.CardStore, exc: PermanentError) -> None:
        await store.turn_cards_off(str(exc))
        log.warning(
            "dingtalk %s: AI cards refused (%s); grant %s (开发者后台 → 权限管理) and check "
            "DINGTALK_CARD_TEMPLATE_ID; markdown replies for the next %d h",
            self.app,
            exc,
            PERMISSIONS,
            keys.DINGTALK_CARDS_OFF_TTL_S // 3600,
        )

    # --- card calls -----------------------------------------------------------------------

    async def _stream(
        self,
        http: aiohttp.ClientSession,
        event_id: str,
        track_id: str,
        text: str,
        *,
        finalize: bool = False,
    ) -> None:
        """The content variable's full text (the client types out the difference)."""
        store = self._cards
        await store.showing(event_id, text)  # first: a worker killed after the PUT loses nothing
        body = cards.streaming_body(track_id, self._content_key, text, finalize=finalize)
        await self.call(http, "PUT", cards.STREAMING_PATH, body)
        await store.alive(event_id)  # only an update that went through is a sign of life

    async def _set_status(
        self, http: aiohttp.ClientSession, track_id: str, text: str, flow_status: str
    ) -> None:
        body = cards.status_body(track_id, self._content_key, text, flow_status)
        await self.call(http, "PUT", cards.INSTANCES_PATH, body)

    async def end_card(
        self,
        http: aiohttp.ClientSession,
        track_id: str,
        text: str,
        *,
        failed: bool = False,
    ) -> None:
        """The last streaming update (isFinalize; isError for a card left with nothing),
        then flowStatus FINISHED or FAILED. The sweeper ends dead turns' cards with it."""
        body = cards.streaming_body(
            track_id, self._content_key, text, finalize=True, error=failed and not text
        )
        await self.call(http, "PUT", cards.STREAMING_PATH, body)
        flow = cards.FLOW_FAILED if failed else cards.FLOW_FINISHED
        try:
            await self._set_status(http, track_id, text, flow)
        except BotError as exc:
            # The text is final already; the status only changes the card's look.
            log.warning("dingtalk %s card %s status not set: %s", self.app, track_id, exc)

    # --- the answer -----------------------------------------------------------------------

    async def send(self, reply: Reply, http: aiohttp.ClientSession) -> str:
        """Finish the message's card with this part; without a card, a markdown reply."""
        event_id = reply.in_reply_to
        await self._stop_trailing(event_id)
        store = self._cards
        card = await store.get(event_id)
        if card is None:
            return await super().send(reply, http)
        if card.done:
            if card.final == reply.text or card.status == cards.SWEPT:
                # A resend of the part the card finished with; or the sweeper ended this
                # card already (one ending per message, even for a turn that came back).
                return card.out_track_id
            return await super().send(reply, http)  # a further part
        try:
            await self.end_card(http, card.out_track_id, reply.text)
        except PlatformUnavailableError:
            raise  # a retry of the turn finishes the same card
        except PermanentError as exc:
            # A card that never came to exist (pending), or one that refuses updates: the
            # answer goes out as markdown, once.
            log.warning(
                "dingtalk %s card of %s not finished (%s): markdown reply", self.app, event_id, exc
            )
            sent = await super().send(reply, http)
            await store.finish(event_id, reply.text)
            return sent
        await store.finish(event_id, reply.text)
        log.info("dingtalk %s card of %s finished", self.app, event_id)
        return card.out_track_id

    async def finish(self, reply: Reply) -> None:
        """A card still open after the turn (no part finished it) ends as it stands."""
        event_id = reply.in_reply_to
        await self._stop_trailing(event_id)
        card = await self._cards.get(event_id)
        if card is None or card.done or card.status != cards.OPEN or self._http is None:
            return
        try:
            await self.end_card(self._http, card.out_track_id, card.text, failed=not card.text)
        except BotError as exc:
            log.warning("dingtalk %s card of %s not ended: %s", self.app, event_id, exc)
            return  # still open: the sweeper ends it
        await self._cards.finish(event_id, card.text)
