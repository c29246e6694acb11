"""Feishu / Lark answers that type themselves: a CardKit streaming card per message.

Opt-in per app (FEISHU_STREAMING_CARDS=true). The first streamed words create a card entity
with streaming mode on and send it as the reply (in groups, to the asker's message); while
the model writes, the card's markdown element gets the full text so far, at most
`card_updates_per_s` times a second, each with a larger `sequence`; the answer's `send`
writes the final text and switches streaming mode off, so the chat list never stays at
"生成中". A fallback model (STREAM_RESTART) starts the card's text again.

State is in Redis (adapters/feishu/cards.py), so a turn redelivered after a worker crash
finishes the same card. A refused card (no `cardkit:card:write` scope, an old client) turns
cards off for the app for a while (bot/keys.py FEISHU_CARDS_OFF_TTL_S) with one log line:
its answers go out as the plain replies of `FeishuAdapter`. Protocol notes:
docs/protocols/feishu.md#streaming-cards.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import redis.asyncio as aioredis

from adapters.cards import CardSink
from adapters.feishu import cards
from adapters.feishu.adapter import MAX_POST_BYTES, FeishuAdapter, reply_uuid
from adapters.text import split_text
from adapters.tokens import TokenCache
from bot import keys
from bot.domain import DEFAULT_APP, Platform, Reply
from bot.errors import BotError, ConfigError, PermanentError, PlatformUnavailableError

log = logging.getLogger(__name__)

CARDS_PATH = "/open-apis/cardkit/v1/cards"
# Feishu's answer when the app lacks a scope the API needs (here cardkit:card:write).
NO_SCOPE_CODE = 99991672
SCOPE = "cardkit:card:write"


def shown_text(reply: Reply, text: str) -> str:
    """What the card's element shows: in groups the asker is @-mentioned first."""
    if reply.is_group and reply.recipient_id:
        return f"<at id={reply.recipient_id}></at> {text}"
    return text


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class FeishuStreamingAdapter(CardSink, FeishuAdapter):
    """A Feishu app whose answers stream into CardKit cards (see the module)."""

    def __init__(
        self,
        *,
        app_id: str,
        app_secret: str,
        verification_token: str,
        encrypt_key: str,
        api_base: str,
        tokens: TokenCache | None,
        app: str = DEFAULT_APP,
        bot_open_id: str = "",
        http_timeout_s: float = 10,
        media_max_bytes: int = 0,
        media_timeout_s: float = 30.0,
        redis: aioredis.Redis | None = None,
        card_updates_per_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Named one by one: the wiring passes each settings field the signature lists.
        super().__init__(
            app_id=app_id,
            app_secret=app_secret,
            verification_token=verification_token,
            encrypt_key=encrypt_key,
            api_base=api_base,
            tokens=tokens,
            app=app,
            bot_open_id=bot_open_id,
            http_timeout_s=http_timeout_s,
            media_max_bytes=media_max_bytes,
            media_timeout_s=media_timeout_s,
        )
        self._redis = redis
        self._start_sink(card_updates_per_s, clock)

    @property
    def _cards(self) -> cards.CardStore:
        if self._redis is None:
            raise ConfigError("Feishu streaming cards need Redis for their state")
        return cards.CardStore(self._redis, self.app)

    def split(self, text: str) -> list[str]:
        """Parts that keep their Markdown (a card's markdown element renders it), ≤ 12 000
        bytes each: the first finishes the card, any further one is a plain reply."""
        return split_text(text, MAX_POST_BYTES) or [""]

    # --- while the model writes (adapters/cards.py CardSink) ------------------------------

    def _shown(self, reply: Reply, text: str) -> str:
        return shown_text(reply, text)

    def _gives_up(self, exc: BotError) -> bool:
        return isinstance(exc, PermanentError)  # a redelivered turn's card refuses: `send` decides

    async def _update_card(
        self, http: aiohttp.ClientSession, event_id: str, card: str, shown: str
    ) -> None:
        await self._update(http, event_id, card, shown)

    async def _open_card(self, http: aiohttp.ClientSession, reply: Reply, shown: str) -> str | None:
        found = await self._open(http, reply, shown)
        return None if found is None else found.card_id

    async def _open(
        self, http: aiohttp.ClientSession, reply: Reply, text: str
    ) -> cards.Card | None:
        """The message's card, shown as its reply: a redelivered turn's, or a new one. None:
        this message is answered in a plain reply."""
        store = self._cards
        event_id = reply.in_reply_to
        found = await store.get(event_id)
        if found is None:
            if await store.cards_off():
                return None
            try:
                card_id = await self._create(http, text)
            except PermanentError as exc:
                await self._cards_refused(store, exc)
                return None
            except BotError as exc:
                log.info("feishu %s no card for %s: %s", self.app, event_id, exc)
                return None
            await store.created(event_id, card_id, text)
            found = await store.get(event_id)
            if found is None:
                return None
        elif found.done:
            return None  # finished (by a turn before, or the sweeper): `send` decides
        else:
            # A new attempt at the answer (the turn was redelivered): start from its words.
            await self._update(http, event_id, found.card_id, text)
        if not found.message_id:
            try:
                message_id = await self._send_card(http, reply, found.card_id)
            except PermanentError as exc:
                await store.forget(event_id)
                await self._cards_refused(store, exc)
                return None
            except BotError as exc:
                # The card may or may not be shown: `send` tries again (same uuid) and
                # finishes it, so the answer is never given twice.
                log.info("feishu %s card for %s not sent yet: %s", self.app, event_id, exc)
                return None
            await store.sent(event_id, message_id)
        await store.alive(event_id)
        return found

    async def _cards_refused(self, store: cards.CardStore, exc: PermanentError) -> None:
        code = exc.errcode
        await store.turn_cards_off(str(exc))
        hint = (
            f"add the {SCOPE} permission (开发者后台 → 权限管理) and publish a new version"
            if code == NO_SCOPE_CODE
            else "answers go out as plain replies"
        )
        log.warning(
            "feishu %s: streaming cards refused (%s); %s; plain replies for the next %d h",
            self.app,
            exc,
            hint,
            keys.FEISHU_CARDS_OFF_TTL_S // 3600,
        )

    # --- CardKit calls --------------------------------------------------------------------

    async def _create(self, http: aiohttp.ClientSession, text: str) -> str:
        data = await self.post(
            http, CARDS_PATH, {"type": "card_json", "data": cards.card_json(text)}
        )
        card_id = _object(data.get("data")).get("card_id")
        if not isinstance(card_id, str) or not card_id:
            raise PlatformUnavailableError("cardkit cards answered no card_id", self.platform)
        return card_id

    async def _send_card(self, http: aiohttp.ClientSession, reply: Reply, card_id: str) -> str:
        content = json.dumps({"type": "card", "data": {"card_id": card_id}})
        body: dict[str, Any] = {
            "msg_type": "interactive",
            "content": content,
            # One card per message, however often this is tried (Feishu keeps uuids 1 h).
            "uuid": reply_uuid(reply.in_reply_to, "card"),
        }
        message_id = reply.route.get("message_id", "")
        params: dict[str, str] | None = None
        if message_id:
            path = f"/open-apis/im/v1/messages/{quote(message_id, safe='')}/reply"
        else:
            path, params = "/open-apis/im/v1/messages", {"receive_id_type": "chat_id"}
            body["receive_id"] = reply.route.get("chat_id") or reply.conversation_id
        data = await self.post(http, path, body, params)
        sent_id = _object(data.get("data")).get("message_id")
        return sent_id if isinstance(sent_id, str) else ""

    async def _update(
        self,
        http: aiohttp.ClientSession,
        event_id: str,
        card_id: str,
        text: str,
        *,
        note: bool = True,
    ) -> None:
        """The element's full text (the client types out the difference). With `note`, the
        text is noted first (what a sweeper ends the card with), and the turn counts as alive
        once the update went through; the sweeper's own ending notes nothing."""
        store = self._cards
        seq = await store.next_sequence(event_id)
        if note:
            await store.showing(event_id, text)
        path = f"{CARDS_PATH}/{quote(card_id, safe='')}/elements/{cards.ELEMENT_ID}/content"
        body = {"content": text, "sequence": seq, "uuid": f"{card_id}-{seq}"}
        await self.call(http, "PUT", path, body)
        if note:
            await store.alive(event_id)

    async def _close(self, http: aiohttp.ClientSession, event_id: str, card_id: str) -> None:
        seq = await self._cards.next_sequence(event_id)
        body = {"settings": cards.closing_settings(), "sequence": seq, "uuid": f"{card_id}-{seq}"}
        await self.call(http, "PATCH", f"{CARDS_PATH}/{quote(card_id, safe='')}/settings", body)

    # --- the answer -----------------------------------------------------------------------

    async def send(self, reply: Reply, http: aiohttp.ClientSession) -> str:
        """Finish the message's card with this part; without a card, a plain reply."""
        await self._stop_trailing(reply.in_reply_to)
        card = await self._cards.get(reply.in_reply_to)
        if card is None:
            return await super().send(reply, http)
        if card.swept:
            # The sweeper ended the card (text so far and a note) after this turn seemed
            # dead: the message has its one answer, a late attempt adds no second one.
            log.warning(
                "feishu %s card of %s was ended by the sweeper: answer not sent",
                self.app,
                reply.in_reply_to,
            )
            return card.message_id
        if card.done:
            if card.final == reply.text:
                return card.message_id  # a resend of the part the card finished with
            return await super().send(reply, http)  # a further part
        message_id = card.message_id
        if not message_id:
            message_id = await self._send_card(http, reply, card.card_id)
            await self._cards.sent(reply.in_reply_to, message_id)
        try:
            await self._update(http, reply.in_reply_to, card.card_id, shown_text(reply, reply.text))
        except PermanentError as exc:
            # Streaming mode already over (past its 10 minutes) or the card refused: the
            # answer goes out plainly, and the card is closed as it stands.
            log.warning(
                "feishu %s card of %s not finished (%s): plain reply",
                self.app,
                reply.in_reply_to,
                exc,
            )
            await self._close_quietly(http, reply.in_reply_to, card.card_id)
            sent = await super().send(reply, http)
            await self._cards.finish(reply.in_reply_to, reply.text)
            return sent
        await self._close(http, reply.in_reply_to, card.card_id)
        await self._cards.finish(reply.in_reply_to, reply.text)
        log.info(
            "feishu %s card of %s finished message_id=%s", self.app, reply.in_reply_to, message_id
        )
        return message_id

    async def finish(self, reply: Reply) -> None:
        """A card still streaming after the turn (no part sent it) closes as it stands."""
        await self._stop_trailing(reply.in_reply_to)
        card = await self._cards.get(reply.in_reply_to)
        if card is None or card.done or not card.message_id:
            return
        if self._http is not None:
            await self._close_quietly(self._http, reply.in_reply_to, card.card_id)
        await self._cards.finish(reply.in_reply_to, card.text)

    async def end_card(
        self, http: aiohttp.ClientSession, event_id: str, card: cards.Card, text: str, note: str
    ) -> None:
        """The sweeper's ending of a card whose turn died: `text` (what it showed and a note),
        then streaming mode off. A card past its streaming window refuses the text: it is
        closed as it stands and `note` goes out as a reply to it."""
        try:
            await self._update(http, event_id, card.card_id, text, note=False)
        except PermanentError as exc:
            log.info(
                "feishu %s card of %s refused its ending (%s): a note", self.app, event_id, exc
            )
            await self._close_quietly(http, event_id, card.card_id)
            if card.message_id:
                await FeishuAdapter.send(self, _note_to(self.app, event_id, card, note), http)
            return
        await self._close(http, event_id, card.card_id)

    async def _close_quietly(
        self, http: aiohttp.ClientSession, event_id: str, card_id: str
    ) -> None:
        try:
            await self._close(http, event_id, card_id)
        except BotError as exc:
            log.warning("feishu %s card of %s not closed: %s", self.app, event_id, exc)


def _note_to(app: str, event_id: str, card: cards.Card, note: str) -> Reply:
    """A reply to the card's own message (its uuid from `event_id`: one note, however often)."""
    return Reply(
        platform=Platform.FEISHU,
        app=app,
        conversation_id="",
        recipient_id="",
        text=note,
        in_reply_to=event_id,
        route={"message_id": card.message_id},
    )
