"""Every Redis key the service writes, and how long each lives: one place to read them all.

Keys are built by small functions so a typo cannot split one key into two, and each TTL
sits next to its key with the reason for its length. Nothing here imports our own code:
adapters, the pipeline, the console and the workers all read their keys from this module.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.domain import InboundMessage

HOUR_S = 3600
DAY_S = 24 * HOUR_S


def _of_message(kind: str, msg: InboundMessage) -> str:
    """`kind:platform:app:event_id`: one platform message, whatever conversation it is in."""
    return f"{kind}:{msg.platform.value}:{msg.app}:{msg.event_id}"


# --- Intake (bot/pipeline/intake.py) -------------------------------------------------------

QUEUE = "bot"  # the Celery queue (a Redis list) that intake pushes to and workers consume
DEDUP_TTL_S = 2 * DAY_S  # longer than every platform's retry window (Feishu: about 7.1 h)
SEQ_TTL_S = 7 * DAY_S


def dedup(msg: InboundMessage) -> str:
    """Set once a platform message is queued: its retries are not queued again."""
    return _of_message("dedup", msg)


def sequence(conversation_key: str) -> str:
    """The turn ticket counter of one conversation (turns run in arrival order)."""
    return f"seq:{conversation_key}"


SIGNATURE_WINDOW_S = 2 * HOUR_S + 60  # the widest timestamp window a platform signature has


def signature_seen(platform: str, app: str, digest: str) -> str:
    """A signature that may be used once (DingTalk robots sign only the timestamp)."""
    return f"signature:{platform}:{app}:{digest}"


# --- Burst coalescing (bot/pipeline/coalesce.py) ---------------------------------------------

BURST_PENDING_TTL_S = 300  # a backlog longer than this just answers messages one by one
BURST_RECORD_TTL_S = 7 * DAY_S


def burst(conversation_key: str) -> str:
    """The messages of a conversation waiting to be joined, scored by their turn ticket."""
    return f"burst:{conversation_key}"


def burst_lead(msg: InboundMessage) -> str:
    """The joined text a lead message answers for (so a retried turn answers the same)."""
    return _of_message("burst:lead", msg)


def coalesced(msg: InboundMessage) -> str:
    """Set on a message absorbed into an earlier one: its own turn answers nothing."""
    return _of_message("coalesced", msg)


# --- Rate limits (bot/pipeline/ratelimit.py) -------------------------------------------------

RATE_DECISION_TTL_S = DAY_S


def rate_keys(msg: InboundMessage) -> tuple[str, str, str, str, str]:
    """Minute log, day log, this message's decision, minute and day notice flags."""
    user = f"{msg.platform.value}:{msg.app}:{msg.sender_id}"
    return (
        f"rate:log:m:{user}",
        f"rate:log:d:{user}",
        _of_message("rate:decision", msg),
        f"rate:noticed:m:{user}",
        f"rate:noticed:d:{user}",
    )


# --- Passive replies (bot/pipeline/passive.py, adapters/wechat_mp/limits.py) -----------------

PASSIVE_STATE_TTL_S = 600  # longer than the platform's retries and a slow turn
PASSIVE_WAITING_TTL_S = 30  # longer than any single wait; a crashed web process frees it
PASSIVE_PENDING_TTL_S = 2 * DAY_S


def passive_keys(msg: InboundMessage) -> tuple[str, str, str, str]:
    """Waiting requests, who answers (passive/active), the answer box, tries."""
    return (
        _of_message("passive:waiting", msg),
        _of_message("passive:claim", msg),
        _of_message("passive:box", msg),
        _of_message("passive:tries", msg),
    )


def passive_pending(platform: str, app: str, user: str) -> str:
    """Answers deferred for one user until their next message can carry them."""
    return f"passive:pending:{platform}:{app}:{user}"


# --- Turns (bot/pipeline/turn.py) --------------------------------------------------------------

MARKER_TTL_S = 7 * DAY_S
ANSWER_TTL_S = DAY_S
WELCOME_EVERY_S = DAY_S


def replied(msg: InboundMessage) -> str:
    """Set once a message's turn is fully answered: a redelivered task does nothing."""
    return _of_message("replied", msg)


def answer(msg: InboundMessage) -> str:
    """The answer of a turn, kept so a retried turn sends the same text."""
    return _of_message("answer", msg)


def sent_part(msg: InboundMessage, index: int) -> str:
    """Set after part `index` of an answer went out (its platform id as value)."""
    return f"{_of_message('sent', msg)}:{index}"


def sending_part(msg: InboundMessage, index: int) -> str:
    """Set before part `index` is sent: a crash between the two is seen on redelivery."""
    return f"{_of_message('sending', msg)}:{index}"


def welcomed(conversation_key: str) -> str:
    return f"welcomed:{conversation_key}"


# --- Pictures for a vision model (bot/pipeline/vision.py) ---------------------------------------
# The TTL is VLLM_IMAGE_MEMORY_S: how long a picture stays part of its conversation.


def pictures(conversation_key: str) -> str:
    """The conversation's latest pictures (JSON attachments), shown with its next questions."""
    return f"pictures:{conversation_key}"


# --- Files customers sent, read as text (bot/pipeline/files.py) -------------------------------
# The TTL is FILES_MEMORY_S: how long a file stays part of its conversation.


def documents(conversation_key: str) -> str:
    """The conversation's latest files read as text (JSON attachments), asked with its
    next questions."""
    return f"documents:{conversation_key}"


# --- Media retention (bot/pipeline/media.py) ------------------------------------------------

MEDIA_PRUNE_EVERY_S = 3600  # one sweep of an app's media folder an hour, by any worker


def media_pruned(platform: str, app: str) -> str:
    """Set while an app's media folder was swept recently (no other worker sweeps it)."""
    return f"media:pruned:{platform}:{app}"


def condensing(conversation_key: str) -> str:
    """Held while a conversation's memory is summarised, so only one worker does it."""
    return f"memory:condense:{conversation_key}"


def served(conversation_key: str) -> str:
    """The last turn ticket answered in a conversation."""
    return f"served:{conversation_key}"


def conversation_lock(conversation_key: str) -> str:
    return f"lock:conv:{conversation_key}"


# --- Human handoff (bot/handoff/) ------------------------------------------------------------

HANDOFF_TURN_TTL_S = DAY_S
HANDOFF_ADDRESS_TTL_S = 30 * DAY_S


def handoff_turn(msg: InboundMessage) -> str:
    """The answer of a turn that handed over, kept for a retried task."""
    return _of_message("handoff:turn", msg)


def handoff_returned(msg: InboundMessage) -> str:
    return _of_message("handoff:returned", msg)


def handoff_transfer(msg: InboundMessage) -> str:
    """Set once the platform's own transfer (微信客服) was asked for this message."""
    return _of_message("handoff:transfer", msg)


def handoff_address(conversation_id: int) -> str:
    """Where an agent's reply to a conversation goes (its last inbound message)."""
    return f"handoff:address:{conversation_id}"


def handoff_low_confidence(conversation_id: int) -> str:
    return f"handoff:lowconf:{conversation_id}"


def handoff_forwarded(conversation_id: int) -> str:
    """Throttles how often a waiting customer's messages are forwarded to the agents."""
    return f"handoff:forwarded:{conversation_id}"


def handoff_acknowledged(conversation_id: int) -> str:
    """Set when a queued customer's message was acknowledged; lives HANDOFF_WAITING_EVERY_S,
    so a burst of messages gets one acknowledgement (bot/handoff/waiting.py)."""
    return f"handoff:acknowledged:{conversation_id}"


# Agents' presence (bot/handoff/presence.py): sorted sets, member the username, score the
# time the status lapses. Each of an agent's console requests, and the page's 30 s heartbeat,
# pushes it PRESENCE_TTL_S ahead: three missed beats (a closed browser) and they are offline.
PRESENCE_ONLINE = "handoff:presence:online"
PRESENCE_AWAY = "handoff:presence:away"
PRESENCE_TTL_S = 90
# The agent given the last conversation, so the next goes to the one after them.
ASSIGN_LAST = "handoff:assign:last"
ASSIGN_LAST_TTL_S = 7 * DAY_S


def webchat_inbox(conversation: str) -> str:
    """An agent's replies to a web chat customer: the stream of the event `inbox:<conv>`."""
    return webchat_stream(f"inbox:{conversation}")


def live_conversation(conversation_id: int) -> str:
    """The pub/sub channel the console's live view of a conversation listens on."""
    return f"live:conversation:{conversation_id}"


# --- Web chat (adapters/web.py, bot/web/identity.py) ----------------------------------------

WEBCHAT_STREAM_TTL_S = HOUR_S
WEBCHAT_IDENTITY_SECRET = "secret:webchat_identity"  # noqa: S105 - a key name, not a secret
IDENTITIES_WINDOW_TTL_S = HOUR_S + 100


def webchat_stream(event_id: str) -> str:
    """The answer of one web chat message, streamed to the page as it grows."""
    return f"webchat:{event_id}"


def identities_issued(address: str, now: float | None = None) -> str:
    """How many web identities one client address got this hour."""
    hour = int((time.time() if now is None else now) // HOUR_S)
    return f"webchat:issued:{address}:{hour}"


# --- WeCom 智能机器人 streams (adapters/wecom_aibot/state.py) ----------------------------------

# WeCom asks for the text so far for 6 minutes after the message and its response_url lives
# one hour: the state outlives both, so a sweeper can still finalize a stream a crashed
# worker left open, and a late refresh still finds the final text.
AIBOT_STREAM_TTL_S = 2 * HOUR_S


def aibot_stream(app: str, stream_id: str) -> str:
    """One streamed answer's state (hash): status, deadline, final text, the message's ids."""
    return f"aibot:stream:{app}:{stream_id}"


def aibot_stream_text(app: str, stream_id: str) -> str:
    """The text streamed so far (a string the worker APPENDs to, as the model writes)."""
    return f"aibot:stream:{app}:{stream_id}:text"


# No TTL: a stream leaves when it finishes, and members older than AIBOT_STREAM_TTL_S (whose
# state is gone) are trimmed whenever a stream opens, so it stays as small as the open ones.
AIBOT_OPEN_STREAMS = "aibot:streams:open"  # sorted set: "{app}:{stream id}" by deadline

# One sweep of dead turns' open streams at a time across every worker (bot/runtime.py): the
# round's lock lives a little less than the interval, so a killed sweeper holds no one back.
SWEEP_EVERY_S = 30
SWEEP_LOCK = "sweep:lock"
SWEEP_LOCK_TTL_S = SWEEP_EVERY_S - 5


# --- Platform clients (adapters/) ------------------------------------------------------------


def access_token(platform: str, app: str) -> str:
    return f"token:{platform}:{app}"


FEISHU_BOT_OPEN_ID_TTL_S = 7 * DAY_S


def feishu_bot_open_id(app: str) -> str:
    return f"feishu:{app}:bot_open_id"


# --- Feishu streaming cards (adapters/feishu/cards.py) ---------------------------------------

# A card's state outlives Feishu's 10-minute streaming window and a redelivered turn's wait,
# so a worker that takes over a crashed turn finds the same card and finishes it.
FEISHU_CARD_TTL_S = 2 * HOUR_S
# No TTL: members leave when their card finishes; the sweeper trims those whose state is gone.
FEISHU_OPEN_CARDS = "feishu:cards:open"  # sorted set: "{app}:{event id}" by last write
# An app without the cardkit:card:write scope (or whose cards are refused) replies in plain
# messages for this long, then tries a card again: adding the scope needs no restart.
FEISHU_CARDS_OFF_TTL_S = 6 * HOUR_S


def feishu_card(app: str, event_id: str) -> str:
    """One message's streaming card (hash): card_id, message_id, seq, text, status, final."""
    return f"feishu:{app}:card:{event_id}"


def feishu_cards_off(app: str) -> str:
    """Set while the app's cards are refused: its answers go out as plain replies."""
    return f"feishu:{app}:cards_off"


# --- DingTalk AI cards (adapters/dingtalk/cards.py) -------------------------------------------

# Like Feishu's: the state outlives a redelivered turn's wait and the sweeper's grace.
DINGTALK_CARD_TTL_S = 2 * HOUR_S
# Cards refused for the app (no card permission, a bad template): markdown replies this long.
DINGTALK_CARDS_OFF_TTL_S = 6 * HOUR_S
# No TTL: members leave when their card finishes; the sweeper trims those whose state is gone.
DINGTALK_OPEN_CARDS = "dingtalk:cards:open"  # sorted set: "{app}:{event id}" by last write


def dingtalk_card(app: str, event_id: str) -> str:
    """One message's AI card (hash): out_track_id, status, text so far, final text."""
    return f"dingtalk:{app}:card:{event_id}"


def dingtalk_cards_off(app: str) -> str:
    """Set while the app's AI cards are refused: its answers go out as markdown replies."""
    return f"dingtalk:{app}:cards_off"


KF_CURSOR_TTL_S = 180 * DAY_S  # a quiet account keeps its place for half a year
KF_LOCK_TTL_S = 120.0
KF_HUMAN_TTL_S = 2 * DAY_S  # WeCom ends idle sessions; the flag must not outlive them for good


def kf_cursor(app: str, open_kfid: str) -> str:
    """Where the 微信客服 sync_msg cursor of one account stands."""
    return f"kf:cursor:{app}:{open_kfid}"


def kf_human(app: str, open_kfid: str, external_userid: str) -> str:
    """Set while a human servicer holds the customer's session: the bot stays silent."""
    return f"kf:human:{app}:{open_kfid}:{external_userid}"


def kf_lock(app: str, open_kfid: str) -> str:
    return f"lock:kf:{app}:{open_kfid}"


MP_NO_API_TTL_S = DAY_S
MP_RECORD_TTL_S = 2 * DAY_S


def mp_customer_service(app: str, openid: str) -> str:
    """What customer-service messages a follower's last interaction still allows."""
    return f"mp:cs:{app}:{openid}"


def mp_no_custom_api(app: str) -> str:
    """Set when the account has no customer-service API (48001): answer passively only."""
    return f"mp:no_custom_api:{app}"


# --- Long connections (bot/stream/runner.py) -------------------------------------------------

STREAM_LEASE_TTL_S = 10.0
# The status outlives a few missed writes, no more: a dead holder shows within ~15 s.
STREAM_STATUS_TTL_S = 15


def stream_holder(platform: str, app: str) -> str:
    """The lease of the one replica that holds an app's long connection."""
    return f"stream:{platform}:{app}:holder"


def stream_status(platform: str, app: str) -> str:
    return f"stream:{platform}:{app}:status"


# --- Orders (bot/orders/bindings.py) ---------------------------------------------------------

PROOF_FAILURES_TTL_S = 2 * DAY_S


def proof_failures_of_user(platform: str, app: str, user_id: str, day: str) -> str:
    return f"orders:proof_failures:{platform}:{app}:{user_id}:{day}"


def proof_failures_of_target(kind: str, target: str, day: str) -> str:
    # Order numbers are compared without case or spaces, as a customer would type them.
    return f"orders:proof_failures:{kind}:{target.strip().upper()[:64]}:{day}"


# --- Knowledge jobs, rules (bot/ingest.py, bot/pipeline/autoreply.py) ------------------------

INGEST_JOB_TTL_S = 7 * DAY_S
AUTOREPLY_VERSION = "autoreply:version"  # bumped on every rule change; workers reload on it


def ingest_job(job_id: str) -> str:
    return f"ingest:{job_id}"


# --- Console (bot/console/) ------------------------------------------------------------------


def console_session(token: str) -> str:
    """Sessions are stored under a hash of the cookie: a Redis dump holds no usable cookie."""
    return "console:session:" + hashlib.sha256(token.encode()).hexdigest()


def login_failures_of_user(username: str) -> str:
    # Hashed: the key space does not grow with whatever an attacker types as a name.
    digest = hashlib.sha256(username.lower().encode()).hexdigest()[:32]
    return f"console:login-failures:user:{digest}"


def login_failures_of_address(address: str) -> str:
    return f"console:login-failures:addr:{address[:64]}"


# --- Sandbox (bot/web/sandbox/): the fake platform a new user tries the bot with ------------

SANDBOX_WECOM_SENT = "sandbox:wecom:sent"
SANDBOX_WECOM_TOKEN = "sandbox:wecom:token"  # noqa: S105 - a key name, not a secret
SANDBOX_WECOM_TOKEN_TTL_S = 2 * HOUR_S
SANDBOX_KF_SENT = "sandbox:kf:sent"
SANDBOX_MEDIA_TTL_S = 3 * DAY_S  # as WeCom keeps a temporary media file


def sandbox_wecom_media(media_id: str) -> str:
    """A picture `bot simulate wecom --image` uploaded (hash: bytes, content type)."""
    return f"sandbox:wecom:media:{media_id}"


def sandbox_kf_messages(open_kfid: str) -> str:
    return f"sandbox:kf:msgs:{open_kfid}"


# Feishu's stand-in (bot/web/sandbox/feishu.py): what it was asked to send, and its cards.
SANDBOX_FEISHU_SENT = "sandbox:feishu:sent"
SANDBOX_FEISHU_TOKEN = "sandbox:feishu:token"  # noqa: S105 - a key name, not a secret


def sandbox_feishu_resource(key: str) -> str:
    """A picture or file `bot simulate feishu --image/--voice` uploaded (hash: bytes, type)."""
    return f"sandbox:feishu:resource:{key}"


def sandbox_feishu_card(card_id: str) -> str:
    """A stand-in card (hash): its last sequence, whether it streams, its text."""
    return f"sandbox:feishu:card:{card_id}"


# DingTalk's stand-in (bot/web/sandbox/dingtalk.py): what it was asked (a list with its
# position counter "…:n"), the tokens it issued, its AI cards and their guids.
SANDBOX_DINGTALK_SENT = "sandbox:dingtalk:sent"


def sandbox_dingtalk_token(token: str) -> str:
    """An access token the stand-in issued (string: the app key), expiring as DingTalk's."""
    return f"sandbox:dingtalk:token:{token}"


def sandbox_dingtalk_media(code: str) -> str:
    """A picture or recording `bot simulate dingtalk --image/--voice` uploaded (hash: bytes,
    content type), named by the downloadCode the stand-in gave it."""
    return f"sandbox:dingtalk:media:{code}"


def sandbox_aibot_media(name: str) -> str:
    """A picture `bot simulate wecom_aibot --image` uploaded, encrypted as WeCom serves it."""
    return f"sandbox:wecom_aibot:media:{name}"


SANDBOX_AIBOT_MEDIA_TTL_S = 10 * 60  # WeCom's URLs are valid "for a few minutes"


def sandbox_dingtalk_card(out_track_id: str) -> str:
    """A stand-in AI card (hash): its template, text and whether it was finalized."""
    return f"sandbox:dingtalk:card:{out_track_id}"


def sandbox_dingtalk_guids(out_track_id: str) -> str:
    """The streaming-update guids a stand-in card has taken (set): each once."""
    return f"sandbox:dingtalk:guids:{out_track_id}"


# --- Model breakers (bot/llm/board.py): each worker's breakers, for the dashboard ------------

# A worker publishes on every change and at least this often; its entry counts as gone once
# it is older than the TTL (a stopped worker drops off the dashboard within half a minute).
BREAKER_PUBLISH_EVERY_S = 10.0
BREAKER_BOARD_TTL_S = 30


def breaker_board(backend: str) -> str:
    """Hash of one model backend's breaker state per worker process (field: the worker)."""
    return f"breaker:{backend}"
