"""The adapter contract: framework-neutral webhook values, the Sender/Adapter protocols and
the abilities only some adapters have.

An ability is a small protocol the adapter implements and the caller checks with
`isinstance`: passive replies in the webhook's own response (Official Account), a call
before `handle` (Feishu learns its bot id), streamed answers and an end-of-answer signal
(web chat), handing a chat to the platform's human servicers and pulling queued messages
(微信客服), fetching what a user sent (DingTalk media), a message that follows a
recorded event (DingTalk's group welcome), answers polled from Redis and ratings of answers
(WeCom 智能机器人).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import aiohttp

from adapters.media import Fetched
from bot.domain import Attachment, InboundMessage, OnDelta, Platform, Reply


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """One HTTP request as the adapter sees it; header names are lower-cased."""

    method: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """What to answer the platform, and the message to enqueue (None: handshake or ignored)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"
    message: InboundMessage | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Set where the platform's signature does not cover the body (a DingTalk robot's `sign`
    # covers only its timestamp): this signature may carry one message only, so a captured
    # header pair cannot be replayed with another body. The web route enforces it.
    single_use_signature: str = ""
    # Set where the answer is the state of a streamed reply that lives in Redis (a WeCom
    # 智能机器人 stream refresh names its stream id): the route awaits the adapter's
    # `RefreshesStreams.refresh` for the body, so any web replica can answer.
    refresh: str = ""


class Sender(Protocol):
    """Sends replies back through one platform app's API."""

    @property
    def platform(self) -> Platform: ...

    @property
    def app(self) -> str: ...

    def split(self, text: str) -> list[str]:
        """Cut a reply into the parts the platform accepts, in order."""
        ...

    async def send(self, reply: Reply, http: aiohttp.ClientSession) -> str:
        """Deliver one part; return the platform's message id ("" when it gives none)."""
        ...


class Adapter(Sender, Protocol):
    """A platform app that also receives webhooks. `handle` is pure: no I/O."""

    def handle(self, request: WebhookRequest, *, now: float) -> WebhookResult: ...


# A coroutine that queues one message as the web process would; False for a duplicate.
Queue = Callable[[InboundMessage], Awaitable[bool]]


@runtime_checkable
class PassiveReplies(Protocol):
    """The answer may ride in the webhook's own HTTP response when it is ready in time."""

    passive_wait_s: float  # 0: never wait
    passive_tries: int  # how many deliveries the platform makes of one message

    def render_passive(
        self, message: InboundMessage, text: str, request: WebhookRequest
    ) -> bytes: ...


@runtime_checkable
class Prepares(Protocol):
    """Needs remote data before `handle` can decide (bounded, never raising)."""

    async def prepare(self, http: aiohttp.ClientSession | None = None) -> None: ...


@runtime_checkable
class StreamsAnswers(Protocol):
    """Shows the answer while it is being written."""

    def delta_sink(self, reply: Reply) -> OnDelta: ...


@runtime_checkable
class UsesSession(Protocol):
    """Calls the platform outside `send` (a streaming card's updates, from `delta_sink`): the
    process hands it its HTTP session once, when it builds the sender."""

    def use_session(self, http: aiohttp.ClientSession) -> None: ...


@runtime_checkable
class RefreshesStreams(Protocol):
    """The platform polls for the answer written so far (WeCom 智能机器人's stream refresh)."""

    async def refresh(self, request: WebhookRequest, result: WebhookResult) -> WebhookResult:
        """The answer to a request `handle` marked with `result.refresh` (reads Redis)."""
        ...


@runtime_checkable
class RatesAnswers(Protocol):
    """A recorded event may be a customer's 👍/👎 on an earlier answer."""

    def rating(self, notice: InboundMessage) -> tuple[str, str, int] | None:
        """(conversation id, event id of the rated message, 1 / -1 / 0 to clear), or None."""
        ...


@runtime_checkable
class Finishes(Protocol):
    """Is told when a message's answer is complete (or when none will come)."""

    async def finish(self, reply: Reply) -> None: ...


@runtime_checkable
class HandsToHuman(Protocol):
    """The platform has its own human servicers a chat can be handed to (微信客服)."""

    async def hand_to_human(self, reply: Reply, http: aiohttp.ClientSession) -> None:
        """Move the chat of `reply` to the servicers; the bot stays silent there."""
        ...

    async def back_to_bot(self, reply: Reply) -> None:
        """The bot answers the chat of `reply` again."""
        ...


@runtime_checkable
class PullsMessages(Protocol):
    """A webhook only says "messages are waiting"; the worker pulls and queues them."""

    async def pull(self, trigger: InboundMessage, http: aiohttp.ClientSession, queue: Queue) -> int:
        """Queue every new message behind `trigger`; return how many were queued."""
        ...


@runtime_checkable
class FetchesMedia(Protocol):
    """What users send can be downloaded through the platform's API."""

    media_max_bytes: int  # 0: nothing is fetched
    media_timeout_s: float

    async def fetch_media(
        self,
        http: aiohttp.ClientSession,
        message: InboundMessage,
        attachment: Attachment,
        dest: Path,
    ) -> Fetched:
        """Save one attachment at `dest`: its size, content type and the name the download
        gave it ("" for none)."""
        ...


@runtime_checkable
class ReadsQuotes(Protocol):
    """A reply to an earlier message names it, and its text is read through the API (Feishu)."""

    async def quoted_text(self, http: aiohttp.ClientSession, message: InboundMessage) -> str:
        """The text of the message `message` quotes ("" when it quotes none)."""
        ...


@runtime_checkable
class FollowsUpNotices(Protocol):
    """A recorded event may call for a message of its own (a group welcome)."""

    def follow_up(self, notice: InboundMessage) -> InboundMessage | None: ...


_ABILITIES: dict[tuple[type, type], bool] = {}


def has(obj: object, ability: type) -> bool:
    """`isinstance(obj, ability)` for the ability Protocols above, remembered per class.

    A runtime-checkable Protocol's isinstance walks every member on each call (about 10 µs
    each, twice per webhook request); an adapter's abilities are fixed by its class, so the
    answer for the first instance holds for all.
    """
    key = (type(obj), ability)
    found = _ABILITIES.get(key)
    if found is None:
        found = _ABILITIES[key] = isinstance(obj, ability)
    return found
