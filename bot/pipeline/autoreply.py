"""Keyword auto-reply rules, evaluated before the agent, as in the Official Account console.

A rule has a ``match`` type, a ``pattern`` and a fixed ``reply``, and is scoped to a platform
and an app (``"*"``: all):

* ``exact``     the whole text equals the pattern (trimmed, case-insensitive): 全匹配;
* ``contains``  the text contains the pattern (case-insensitive): 半匹配;
* ``regex``     Python regular expression searched in the text (checked when saved);
* ``click``     a menu CLICK whose key equals the pattern (WeChat MP);
* ``subscribe`` a subscribe (关注) event; a non-empty pattern must equal the ``qrscene``;
* ``default``   any message (not an event) no other rule matched, only while the agent is
                off (no model configured), like the console's 收到消息回复.

Rules come from the database (`bot.db.models.AutoReplyRule`, managed by /api/autoreply/rules and
the console's rules page through bot/pipeline/rule_store.py; a rule switched off is skipped)
and from the optional file ``BOT_AUTOREPLY_FILE`` (JSON ``{"rules": [...]}`` or TOML
``[[rules]]``). The first match wins: lower ``priority`` first, then exact, click,
subscribe, contains, regex, default, then file order / id. For WeChat MP a CLICK key without a rule
may still have a reply in ``WECHAT_MP_MENU_REPLIES``. A message that an adapter flags
``unsupported`` (微信客服 image, voice, file, location…) and no rule answers gets a polite fixed
text asking for words (`unsupported_reply`).

Changes reach running workers without a restart: the admin API bumps the Redis key
``autoreply:version``, which each worker reads once per message (the database is re-read only
when it moved, or every ``MAX_AGE_S``); the file is re-read when its mtime changes. A bad rule
in the file is logged and skipped; a bad rule sent to the API is a 400 (`RuleError`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import re2  # google-re2: linear-time matching for the rules' patterns
import redis.asyncio as aioredis
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from bot import keys
from bot.db.engine import get_engine
from bot.db.models import AutoReplyRule, AutoReplyRuleOff
from bot.domain import GROUP_WELCOME, Content, InboundMessage, MessageKind, Platform
from bot.pipeline import files, voice
from bot.settings import DingTalkSettings, Settings, WeChatMPSettings
from bot.settings import apps as appconfig

log = logging.getLogger(__name__)

MAX_AGE_S = 30.0  # re-read the database at least this often, even if no version moved
ANY = "*"
MATCH_TYPES = ("exact", "click", "subscribe", "contains", "regex", "default")
# What a rule is written with (JSON, a database row, the file), in the order shown.
RULE_FIELDS = ("match", "pattern", "reply", "platform", "app", "priority")
MAX_PATTERN_CHARS = 512
MAX_REPLY_BYTES = 2048  # one WeChat message; longer fixed replies would be split
MAX_PRIORITY = 1_000_000
# Regexes are matched against at most this much text: bounds the cost of a slow pattern.
MAX_MATCHED_CHARS = 1000
# Rules are matched with RE2, in time linear in the text: Python's re backtracks, and no
# screening of patterns catches every slow one ((a|a)*$ and (.*a){12}$ froze a worker for
# 23 s on 29 characters). RE2 has no backreferences or lookaround; such patterns are refused
# when saved. Its errors are ours to report, not to print.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
# Python's \uXXXX / \UXXXXXXXX escapes, which RE2 writes \x{XXXX}.
_PY_UNICODE_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\(?:u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8}))")
_SCOPE = re.compile(r"^(\*|[\w.-]{1,64})$")
_PLATFORMS = {p.value for p in Platform}
# Messages that are not text the customer typed (placeholders for media, events).


class RuleError(ValueError):
    """A rule that cannot be used; the message says why, `field` names the field ("": the
    rule as a whole), so a form can point at it."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.field))


@dataclass(frozen=True, slots=True)
class Rule:
    """One validated rule; `key` names its origin (``db:12``, ``file:3``)."""

    match: str
    pattern: str
    reply: str
    platform: str = ANY
    app: str = ANY
    priority: int = 100
    key: str = ""
    regex: Any = field(default=None, compare=False, repr=False)  # a compiled RE2 pattern

    def to_json(self) -> dict[str, Any]:
        return rule_json(self)

    def applies_to(self, msg: InboundMessage) -> bool:
        return self.platform in (ANY, msg.platform.value) and self.app in (ANY, msg.app)

    def matches(self, msg: InboundMessage) -> bool:
        if self.match == "click":
            return msg.event == "CLICK" and msg.event_key == self.pattern
        if self.match == "subscribe":
            return msg.event == "subscribe" and self.pattern in ("", msg.event_key)
        if self.match == "default":
            # Like 收到消息回复: any message but events, media placeholders included.
            return msg.kind is MessageKind.TEXT and not msg.event
        if not _typed(msg):
            return False
        text = msg.text.strip()
        if self.match == "exact":
            return text.casefold() == self.pattern.strip().casefold()
        if self.match == "contains":
            return self.pattern.casefold() in text.casefold()
        if self.match == "regex" and self.regex is not None:
            return self.regex.search(text[:MAX_MATCHED_CHARS]) is not None
        return False


def rule_json(rule: object) -> dict[str, Any]:
    """A rule's own fields (of a validated rule, a database row or a `rule_store.StoredRule`),
    as the API shows them."""
    return {name: getattr(rule, name) for name in RULE_FIELDS}


def _typed(msg: InboundMessage) -> bool:
    # Keyword rules answer what the customer wrote (or said, when recognised), not events
    # or media placeholders such as "[图片]".
    return bool(msg.question) and msg.content in (Content.TEXT, Content.VOICE)


def parse_rule(data: Mapping[str, Any], *, key: str = "") -> Rule:
    """Validate one rule given as a mapping; raises RuleError with a clear reason."""
    if not isinstance(data, Mapping):
        raise RuleError("a rule must be an object")
    unknown = set(data) - {"match", "pattern", "reply", "platform", "app", "priority", "id"}
    if unknown:
        raise RuleError(f"unknown fields: {', '.join(sorted(unknown))}")
    match = data.get("match")
    if match not in MATCH_TYPES:
        raise RuleError(f"match must be one of {', '.join(MATCH_TYPES)}", "match")
    pattern = data.get("pattern", "")
    reply = data.get("reply")
    platform = data.get("platform", ANY)
    app = data.get("app", ANY)
    priority = data.get("priority", 100)
    if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN_CHARS:
        raise RuleError(
            f"pattern must be a string of at most {MAX_PATTERN_CHARS} characters", "pattern"
        )
    if match in ("exact", "contains", "regex", "click") and not pattern.strip():
        raise RuleError(f"a {match} rule needs a pattern", "pattern")
    if not isinstance(reply, str) or not reply.strip():
        raise RuleError("reply must be a non-empty string", "reply")
    if len(reply.encode("utf-8")) > MAX_REPLY_BYTES:
        raise RuleError(f"reply is longer than {MAX_REPLY_BYTES} bytes", "reply")
    if not isinstance(platform, str) or (platform != ANY and platform not in _PLATFORMS):
        raise RuleError(
            f"platform must be '*' or one of {', '.join(sorted(_PLATFORMS))}", "platform"
        )
    if not isinstance(app, str) or not _SCOPE.fullmatch(app):
        raise RuleError("app must be '*' or an app name (letters, digits, _ . -)", "app")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise RuleError("priority must be an integer", "priority")
    if abs(priority) > MAX_PRIORITY:  # the database column is a 32-bit integer
        raise RuleError(f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}", "priority")
    regex = compile_pattern(pattern) if match == "regex" else None
    return Rule(match, pattern, reply, platform, app, priority, key, regex)


def compile_pattern(pattern: str) -> Any:
    """The rule's pattern as an RE2 regex (linear-time matching); RuleError if RE2 cannot."""
    translated = _PY_UNICODE_ESCAPE.sub(
        lambda m: f"{m.group(1)}\\x{{{m.group(2) or m.group(3)}}}", pattern
    )
    try:
        return re2.compile(translated, options=_RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise RuleError(
            f"pattern is not a valid regular expression for RE2 ({reason}); backreferences "
            "such as \\1 and lookarounds such as (?=…) are not supported",
            "pattern",
        ) from None


def parse_rules_text(text: str, *, toml: bool) -> list[Rule]:
    """The rules of a file's text; bad rules are logged and skipped, a bad file raises."""
    try:
        data = tomllib.loads(text) if toml else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise RuleError(f"cannot parse the rules file: {exc}") from None
    items = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise RuleError('the rules file needs a "rules" list')
    rules = []
    for index, item in enumerate(items, start=1):
        try:
            rules.append(parse_rule(item, key=f"file:{index}"))
        except RuleError as exc:
            log.error("auto-reply rule %d of the rules file skipped: %s", index, exc)
    return rules


def choose(rules: Sequence[Rule], msg: InboundMessage, *, agent_on: bool) -> Rule | None:
    """The first rule (by priority, then match type) that answers `msg`."""
    order = {name: i for i, name in enumerate(MATCH_TYPES)}
    ranked = sorted(
        (r for r in rules if r.applies_to(msg) and (agent_on is False or r.match != "default")),
        key=lambda r: (r.match == "default", r.priority, order[r.match]),
    )
    return next((r for r in ranked if r.matches(msg)), None)


# --- loading, with a per-process cache ------------------------------------------------------


@dataclass
class _Cache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    db_rules: list[Rule] = field(default_factory=list)
    db_version: str | None = None
    db_read_at: float = -MAX_AGE_S
    file_path: Path | None = None
    file_mtime: float | None = None
    file_rules: list[Rule] = field(default_factory=list)


_caches: dict[str, _Cache] = {}
_caches_lock = threading.Lock()


def load_db_rules(session: Session) -> list[Rule]:
    """The database rules in use (not switched off), in id order; a row that no longer
    validates is logged and skipped."""
    rules = []
    off = select(AutoReplyRuleOff.rule_id)
    query = select(AutoReplyRule).where(col(AutoReplyRule.id).not_in(off))
    for row in session.exec(query.order_by(col(AutoReplyRule.id))):
        try:
            rules.append(parse_rule(rule_json(row), key=f"db:{row.id}"))
        except RuleError as exc:
            log.error("auto-reply rule db:%s skipped: %s", row.id, exc)
    return rules


def _file_rules(cache: _Cache, path: Path | None) -> list[Rule]:
    if path is None:
        return []
    try:
        mtime = path.stat().st_mtime
    except OSError:
        if cache.file_mtime is not None or cache.file_path != path:
            log.error("auto-reply rules file %s cannot be read", path)
        cache.file_path, cache.file_mtime, cache.file_rules = path, None, []
        return []
    if cache.file_path == path and cache.file_mtime == mtime:
        return cache.file_rules
    try:
        rules = parse_rules_text(
            path.read_text(encoding="utf-8"), toml=path.suffix.lower() == ".toml"
        )
        log.info("auto-reply rules file %s loaded: %d rules", path, len(rules))
    except (OSError, UnicodeDecodeError, RuleError) as exc:
        # Keep the last good rules: a half-saved file must not switch every rule off.
        log.error("auto-reply rules file %s not loaded: %s", path, exc)
        rules = cache.file_rules if cache.file_path == path else []
    cache.file_path, cache.file_mtime, cache.file_rules = path, mtime, rules
    return rules


async def _version(redis: aioredis.Redis) -> str | None:
    try:
        raw = await redis.get(keys.AUTOREPLY_VERSION)
    except (aioredis.RedisError, OSError) as exc:
        log.warning("auto-reply version unreadable (%s): using cached rules", type(exc).__name__)
        return None
    return version_of(raw)


def version_of(raw: object) -> str:
    """The rules' version from the raw value of `keys.AUTOREPLY_VERSION` (absent: "0")."""
    return raw.decode() if isinstance(raw, bytes) else str(raw or "0")


def _cache_of(settings: Settings) -> _Cache:
    with _caches_lock:
        return _caches.setdefault(settings.core.effective_database_url(), _Cache())


def _stale(cache: _Cache, version: str | None) -> bool:
    old = time.monotonic() - cache.db_read_at >= MAX_AGE_S
    return old or (version is not None and version != cache.db_version)


def current_rules(settings: Settings, version: str | None) -> list[Rule]:
    """The file's and the database's rules, re-read when the version or the file moved.

    Blocking when the database rules are re-read: async callers use `rules_for`.
    """
    url = settings.core.effective_database_url()
    cache = _cache_of(settings)
    with cache.lock:
        if _stale(cache, version):
            try:
                with Session(get_engine(url)) as session:
                    cache.db_rules = load_db_rules(session)
                cache.db_version, cache.db_read_at = version, time.monotonic()
            except SQLAlchemyError:
                log.exception("auto-reply rules unreadable from the database: using cached ones")
        return [*_file_rules(cache, settings.core.autoreply_file), *cache.db_rules]


_MEDIA_NAMES = {
    "image": "图片",
    "video": "视频",
    "file": "文件",
    "location": "位置信息",
    "link": "链接",
    "business_card": "名片",
    "miniprogram": "小程序",
    "sticker": "表情",
}
VOICE_REPLY = "抱歉，我暂时还听不了语音，请用文字描述您的问题，我会马上为您解答。"


# A picture a vision model could have seen, had it arrived whole (Attachment.error).
_PICTURE_PROBLEMS = {
    "too_large": "抱歉，这张图片太大了，我没能查看。请压缩或截取关键部分后重新发送，"
    "或用文字描述您的问题。",
    "corrupt": "抱歉，这张图片无法打开（文件可能已损坏），请重新发送，或用文字描述您的问题。",
    "not_image": "抱歉，收到的文件不是可以查看的图片（支持 JPG、PNG、GIF、BMP、WebP），"
    "请重新发送，或用文字描述您的问题。",
    "refused": "抱歉，图片没能收到，请重新发送，或用文字描述您的问题。",
    "failed": "抱歉，图片没能收到，请稍后重新发送，或用文字描述您的问题。",
    "busy": "抱歉，现在要看的图片较多，这张图片没能及时查看。请稍后重新发送，"
    "或用文字描述您的问题。",
}


def _picture_error(msg: InboundMessage) -> str:
    return next((a.error for a in msg.attachments if a.kind is Content.IMAGE and a.error), "")


def unsupported_reply(content: str, error: str = "") -> str:
    """The fixed answer to a message type the bot cannot read (`error`: why a picture could
    not be shown to the vision model)."""
    if content == Content.IMAGE and error in _PICTURE_PROBLEMS:
        return _PICTURE_PROBLEMS[error]
    if content == Content.VOICE:
        return VOICE_REPLY
    name = _MEDIA_NAMES.get(content, "这类消息")
    return f"抱歉，我暂时还看不了{name}，请用文字描述您的问题，我会马上为您解答。"


def agent_is_on(settings: Settings) -> bool:
    """True when a model is configured; `default` rules answer only while it is off."""
    return settings.vllm.enabled or settings.dashscope.enabled


async def rules_for(settings: Settings, version: str | None) -> list[Rule]:
    """`current_rules` without blocking the event loop: a database re-read runs in a thread."""
    cache = _cache_of(settings)
    if not _stale(cache, version):
        return [*_file_rules(cache, settings.core.autoreply_file), *cache.db_rules]
    return await asyncio.to_thread(current_rules, settings, version)


async def find_reply(
    msg: InboundMessage, settings: Settings, redis: aioredis.Redis, version: str | None = None
) -> str | None:
    """The fixed reply of the first rule that matches `msg`, or None to ask the agent.

    `redis` is the caller's client (the worker's own), read for the rules' version key unless
    the caller read it already (`version`, see `version_of`) with its own commands.
    """
    rules = await rules_for(settings, version if version is not None else await _version(redis))
    rule = choose(rules, msg, agent_on=agent_is_on(settings))
    if rule is not None:
        log.info("auto-reply rule %s (%s) answers %s", rule.key, rule.match, msg.event_id)
        return rule.reply
    if msg.placeholder:
        # A message the bot cannot read (an image, a file, voice without a transcript…): a
        # polite answer rather than silence or a model guessing at "[图片]". With a vision
        # model, a picture that could not be shown says why (bot/pipeline/vision.py).
        error = _picture_error(msg) if settings.sees_images else ""
        if msg.content is Content.FILE:
            # A file read without a model, or not read: what arrived, or why not
            # (bot/pipeline/files.py).
            said = await files.reply(msg, settings)
            if said:
                return said
        if msg.content is Content.VOICE:
            # Voice that speech recognition could not turn into words says why
            # (bot/pipeline/voice.py).
            heard = voice.reply(msg, settings)
            if heard:
                return heard
        return unsupported_reply(msg.content, error)
    return _configured_reply(msg, settings)


def _configured_reply(msg: InboundMessage, settings: Settings) -> str | None:
    """An app's own menu reply or welcome (a bot.toml app has its own, else the env one)."""
    section = appconfig.section(settings, msg.platform.value, msg.app)
    if isinstance(section, WeChatMPSettings):
        if msg.event == "CLICK":
            return section.menu_replies.get(msg.event_key) or None
        if msg.event == "subscribe":
            return section.welcome_text or None
    if isinstance(section, DingTalkSettings) and msg.event == GROUP_WELCOME:
        return section.group_welcome_text or None
    return None
