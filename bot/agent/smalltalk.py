"""Small talk without a model: greetings, thanks, goodbye and "who are you".

A message is small talk only when all of it is (after normalising: NFKC, lower case, only
letters and digits, trailing particles such as 啊/呀/哈 dropped): "你好在吗" and "好的谢谢"
are; "你好，发票怎么开" is not, and `strip_leading` gives the question after the greeting.
Matching walks the text once with plain prefix comparisons over a fixed phrase list
(no regular expression over customer text), and gives up past `MAX_CHARS`.

"人工" / "转人工" is not small talk: the handoff rules (bot/handoff/rules.py) take it first.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

GREETING = "greeting"
THANKS = "thanks"
GOODBYE = "goodbye"
IDENTITY = "identity"
KINDS = (GREETING, THANKS, GOODBYE, IDENTITY)
# Longer than this is a sentence with content, not small talk (and bounds the work).
MAX_CHARS = 24

# Normalised phrases, each with its kind. Fillers (好的, 嗯) carry no kind of their own.
_PHRASES: dict[str, str] = {
    **dict.fromkeys(
        (
            "你好",
            "您好",
            "你们好",
            "在吗",
            "在不在",
            "在么",
            "有人吗",
            "有人在吗",
            "哈喽",
            "嗨",
            "喂",
            "hi",
            "hello",
            "hey",
            "早上好",
            "上午好",
            "中午好",
            "下午好",
            "晚上好",
            "早",
            "客服",
            "客服在吗",
            "亲",
            "亲在吗",
            "请问",
        ),
        GREETING,
    ),
    **dict.fromkeys(
        (
            "谢谢",
            "多谢",
            "谢谢你",
            "谢谢您",
            "谢了",
            "感谢",
            "非常感谢",
            "太感谢了",
            "谢谢啦",
            "麻烦了",
            "辛苦了",
            "thanks",
            "thankyou",
            "thx",
            "好的谢谢",
            "知道了谢谢",
        ),
        THANKS,
    ),
    **dict.fromkeys(
        ("再见", "拜拜", "拜", "bye", "byebye", "goodbye", "回见", "下次见", "88"),
        GOODBYE,
    ),
    **dict.fromkeys(
        (
            "你是谁",
            "您是谁",
            "你是机器人吗",
            "你是机器人",
            "是机器人吗",
            "你是人工吗",
            "你是真人吗",
            "是真人吗",
            "你是ai吗",
            "你叫什么",
            "你叫什么名字",
        ),
        IDENTITY,
    ),
    **dict.fromkeys(("好的", "好", "嗯", "嗯嗯", "ok", "okay", "哦", "知道了", "明白了"), ""),
}
_LONGEST = max(len(p) for p in _PHRASES)
_SEPARATORS = " \t\r\n,，、.。!！?？~～"
_PARTICLES = frozenset("啊呀呢哈啦吧哦嘛呐哇了~")
# When several kinds are said together the later intent wins ("谢谢，再见" is a goodbye),
# and a question about the bot is answered over a greeting.
_RANK = {GREETING: 1, THANKS: 2, GOODBYE: 3, IDENTITY: 4}

DEFAULT_TEXTS: dict[str, str] = {
    GREETING: "您好，请问有什么可以帮您？",
    THANKS: "不客气，还有其他问题随时问我。",
    GOODBYE: "好的，感谢您的咨询，再见！",
    IDENTITY: "我是智能客服助手，可以解答常见问题；需要人工时请发送“人工”。",
}


@dataclass(frozen=True, slots=True)
class SmallTalkTexts:
    """What the bot says for each kind (AGENT_*_TEXT, or an app's own in bot.toml)."""

    greeting: str = DEFAULT_TEXTS[GREETING]
    thanks: str = DEFAULT_TEXTS[THANKS]
    goodbye: str = DEFAULT_TEXTS[GOODBYE]
    identity: str = DEFAULT_TEXTS[IDENTITY]

    def text(self, kind: str) -> str:
        return str(getattr(self, kind)) or DEFAULT_TEXTS[kind]


def normalise(text: str) -> str:
    """NFKC, lower case, only letters and digits (one pass, no regular expression)."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).lower() if c.isalnum())


def _walk(norm: str) -> tuple[int, str]:
    """How far from the start `norm` is small talk (greedy longest phrase), and its kind."""
    pos, kind = 0, ""
    while pos < len(norm):
        if norm[pos] in _PARTICLES:
            pos += 1
            continue
        for size in range(min(_LONGEST, len(norm) - pos), 0, -1):
            found = _PHRASES.get(norm[pos : pos + size])
            if found is not None:
                if found and _RANK[found] >= _RANK.get(kind, 0):
                    kind = found
                pos += size
                break
        else:
            break
    return pos, kind


def kind_of(text: str) -> str | None:
    """The small-talk kind of a whole message, or None when it says anything else."""
    if len(text) > MAX_CHARS * 4:
        return None
    norm = normalise(text)
    if not norm or len(norm) > MAX_CHARS:
        return None
    end, kind = _walk(norm)
    if end < len(norm):
        return None
    # Fillers alone ("好的", "嗯") acknowledge an answer: thanked for, in effect.
    return kind or THANKS


def strip_leading(text: str) -> str:
    """`text` without a leading greeting ("你好，发票怎么开" -> "发票怎么开"), else as is.

    Only whole clauses are dropped (up to a comma, space or line break), so a question that
    begins with a phrase's characters ("请问运费多少") keeps its words.
    """
    rest = text.lstrip()
    for _ in range(3):  # "你好，在吗，..." at most a few greetings deep
        cut = _clause_end(rest)
        if cut <= 0 or kind_of(rest[:cut]) != GREETING:
            break
        rest = rest[cut:].lstrip(_SEPARATORS)
    return rest or text


def _clause_end(text: str) -> int:
    for i, c in enumerate(text[: MAX_CHARS + 1]):
        if c in _SEPARATORS:
            return i
    return -1
