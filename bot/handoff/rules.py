"""When a conversation should go to a person: pure functions over the customer's words.

Used by bot/handoff/flow.py. The explicit request and the release command are checked before
any model runs; anger and repeats after the answer. Texts are compared normalised (NFKC,
lower case, punctuation and spaces removed), so "转 人工！" and "转人工" are the same.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from difflib import SequenceMatcher

# Found anywhere in the message (after normalising).
HUMAN_PHRASES = (
    "转人工",
    "人工客服",
    "找人工",
    "人工服务",
    "真人",
    "接人工",
    "转接人工",
    "我要人工",
    "要人工",
    "人工坐席",
    "realperson",
    "talktoahuman",
    "speaktoahuman",
    "humanagent",
    "liveagent",
)
# Only the whole message: "人工" inside another sentence (人工智能, 人工费) is not a request.
HUMAN_WHOLE = frozenset({"人工", "人工人工", "human", "agent", "humanplease"})
# A request preceded by one of these is a refusal ("不用转人工").
NEGATIONS = ("不要", "不用", "不需要", "无需", "别", "不想")
RELEASE_PHRASES = ("结束人工", "退出人工", "转机器人", "回到机器人", "不需要人工了", "/bot")
ANGER_DEFAULTS = (
    "投诉",
    "垃圾",
    "骗子",
    "骗人",
    "太差了",
    "差评",
    "什么玩意",
    "气死",
    "废物",
    "坑人",
    "12315",
    "忍无可忍",
    "太过分",
)
NEAR_SAME_RATIO = 0.85

_NOT_WORD = re.compile(r"[\W_]+")
_SPLIT = re.compile(r"[,，、;；\n]+")


def normalise(text: str) -> str:
    """NFKC, lower case, only letters and digits: the form every rule compares."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).lower())


def keywords(raw: str) -> tuple[str, ...]:
    """A configured keyword list ("a,b，c、d") as normalised phrases, empty ones dropped."""
    return tuple(k for k in (normalise(p) for p in _SPLIT.split(raw)) if k)


def _contains(text: str, phrases: Iterable[str], *, negatable: bool = False) -> bool:
    for phrase in phrases:
        start = text.find(phrase)
        while start >= 0:
            before = text[max(0, start - 3) : start]
            if not (negatable and any(before.endswith(n) for n in NEGATIONS)):
                return True
            start = text.find(phrase, start + 1)
    return False


def wants_human(text: str, extra: Sequence[str] = ()) -> bool:
    """The customer asks for a person (转人工 and its variants, or a configured phrase)."""
    norm = normalise(text)
    if not norm:
        return False
    if norm in HUMAN_WHOLE:
        return True
    return _contains(norm, (*HUMAN_PHRASES, *extra), negatable=True)


def wants_release(text: str, extra: Sequence[str] = ()) -> bool:
    """The customer ends the human session ("结束人工", "/bot")."""
    stripped = text.strip().lower()
    if stripped in {"/bot", "/机器人"}:
        return True
    return _contains(normalise(text), (*(normalise(p) for p in RELEASE_PHRASES), *extra))


def is_angry(text: str, anger: Sequence[str] = ANGER_DEFAULTS) -> bool:
    """An angry or complaining message (configured keywords)."""
    return _contains(normalise(text), (normalise(k) for k in anger))


def near_same(a: str, b: str) -> bool:
    """Two normalised texts that say (nearly) the same thing."""
    if not a or not b:
        return False
    return a == b or SequenceMatcher(None, a, b).ratio() >= NEAR_SAME_RATIO


def is_repeat(texts: Sequence[str], count: int) -> bool:
    """The last `count` customer texts (oldest first, current last) are nearly the same."""
    if count < 2 or len(texts) < count:
        return False
    recent = [normalise(t) for t in texts[-count:]]
    return all(near_same(recent[-1], t) for t in recent[:-1])
