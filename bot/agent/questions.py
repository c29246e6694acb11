"""One turn, several questions: "运费多少？发票怎么开？" or a coalesced burst.

`split` cuts a turn into its questions at sentence ends (？?。！!；;), line breaks (a burst
is joined with "\\n") and conjunctions (顺便问下… anywhere; 另外 where a clause starts; 还有,
以及, 对了 where a clause starts after something asked, since "还有货吗" is one question);
two comma-joined clauses that each ask are two questions. Parts that are only small talk
("在吗") are dropped, a leading greeting is cut off, fragments without two letters or
digits are joined to the question before them, and statements ("扫地机连不上wifi") are
the topic of a short question after them ("怎么办"), a bare topic ("火车票") of any question
after it. At most `MAX_PARTS` questions; the rest stays with the last. One pass over the
text with plain string operations: no regular expression.

The agent answers each question the way a single one is answered without a model (the
order backend, an FAQ's written answer, else the best confident passage); `numbered` says
them in one reply, a question nothing answers left for a person.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.agent import smalltalk
from bot.domain import Source
from knowledge.base import Hit

MAX_PARTS = 5
# Past this a turn is not split (a pasted document, not a list of questions).
MAX_CHARS = 600
_ENDS = frozenset("？?。！!；;\n\r")
_ANYWHERE = ("顺便问一下", "顺便问下", "顺便问问", "顺便问", "再问一下", "还想问")
# 另外 only where a clause starts: "搬家到另外一个城市" is one question.
_CLAUSE_START = ("还有", "以及", "对了")
_BESIDES = "另外"
_CLAUSE_MARKS = frozenset("，,、 \t")
# A question this short ("怎么办", "运费谁出") needs the statement before it as its topic.
_SHORT_QUESTION = 6
# A statement this short ("火车票", "发票") is the topic of the question after it.
_TOPIC = 4
# A clause after a comma is a question of its own from this many letters or digits on.
_CLAUSE_MIN = 4
# What makes a piece a question; a piece without any ("我家宽带断了", "扫地机连不上wifi")
# is the context of a short question after it, joined to it.
_ASKING = (
    "?",
    "？",
    "吗",
    "么",
    "怎",
    "咋",
    "什么",
    "啥",
    "多少",
    "多久",
    "几",
    "哪",
    "如何",
    "能否",
    "能不能",
    "可不可以",
    "是否",
    "有没有",
    "要不要",
    "会不会",
    "是不是",
    "为何",
    # Tag questions ask for a yes: "套餐降档是次月生效对吧" is a question of its own.
    "对吧",
    "是吧",
)
# First-person openers of a request ("我要改套餐", "我想注销号码") say nothing the knowledge
# base is searched for, and the judge counts them as words no answer covers. Dropped in the
# shorter reading only: dropped everywhere, "改套餐，改成39的，啥时候能生效" got a wrong answer.
# Longest first: the first that matches is dropped.
_OPENERS: tuple[str, ...] = ("我想问一下", "我想问下", "我想问", "想问一下", "想问下", "我想要")
_OPENERS += ("我要", "我想", "我家", "我的")
UNANSWERED_PART = "这个问题我暂时无法回答，已记录，人工客服会尽快跟进。"
NONE_ANSWERED = "抱歉，这些问题我暂时无法回答。您的问题已记录，人工客服会尽快跟进。"


@dataclass(frozen=True, slots=True)
class PartAnswer:
    """One question's answer (`said` None: nothing answers it confidently)."""

    question: str
    said: str | None = None
    # The knowledge-base entry it came from (None: unanswered, or the order backend).
    hit: Hit | None = None


def _pieces(text: str) -> list[str]:
    """Cut at sentence ends and at conjunctions (conjunctions dropped, ends kept)."""
    pieces: list[str] = []
    start = i = 0
    while i < len(text):
        c = text[i]
        if c in _ENDS:
            pieces.append(text[start : i + 1])
            start = i = i + 1
            continue
        word = next((w for w in _ANYWHERE if text.startswith(w, i)), "")
        # "还有货吗" alone is one question: a clause conjunction only after something asked.
        at_start = i == start or text[i - 1] in _CLAUSE_MARKS
        if not word and at_start and text.startswith(_BESIDES, i):
            word = _BESIDES  # a conjunction wherever a clause starts with it
        if not word and at_start and _meaningful(text[:i]):
            word = next((w for w in _CLAUSE_START if text.startswith(w, i)), "")
        if word:
            pieces.append(text[start:i])
            start = i = i + len(word)
            continue
        i += 1
    pieces.append(text[start:])
    return pieces


def _clauses(piece: str) -> list[str]:
    """`piece` cut at commas between two clauses that each ask ("几点能入住，押金多少"); a
    clause that asks nothing stays with its neighbours ("房已过取消时间了，还能退吗")."""
    clauses: list[str] = []
    start = 0
    for i, c in enumerate(piece):
        if c in "，,":
            clauses.append(piece[start : i + 1])
            start = i + 1
    clauses.append(piece[start:])
    out: list[str] = []
    for clause in clauses:
        if out and _asks(out[-1]) and _asks(clause) and _alnum(clause) >= _CLAUSE_MIN:
            out.append(clause)
        elif out:
            out[-1] += clause
        else:
            out.append(clause)
    return out


def _alnum(piece: str) -> int:
    return sum(c.isalnum() for c in piece)


def _meaningful(piece: str) -> bool:
    return _alnum(piece) >= 2


def _asks(piece: str) -> bool:
    return any(marker in piece for marker in _ASKING)


def _without_opener(piece: str) -> str:
    opener = next((w for w in _OPENERS if piece.startswith(w)), "")
    rest = piece[len(opener) :].lstrip(" \t，,、")
    return rest if _meaningful(rest) else piece


def split(text: str) -> list[str]:
    """The questions of one turn, in order; [] for a turn of small talk only."""
    return [question for question, _ in readings(text)]


def readings(text: str) -> list[tuple[str, str | None]]:
    """`split`'s questions, each with a shorter reading to try when nothing answers it
    (else None): a short question after several statements ("我要改套餐\n改成39的\n啥时候
    能生效") asked with the first statement only, which names the subject ("改套餐，啥时候能
    生效"); the statements between are details the knowledge base rarely words."""
    if len(text) > MAX_CHARS:
        return [(text.strip(), None)]
    parts: list[tuple[str, str | None]] = []
    context: list[str] = []  # statements waiting for the question they explain
    for raw in (clause for piece in _pieces(text) for clause in _clauses(piece)):
        piece = raw.strip(" \t\r\n，,、")
        if not piece or smalltalk.kind_of(piece) is not None:
            continue
        piece = smalltalk.strip_leading(piece)
        if not _meaningful(piece):
            if parts and not context:
                parts[-1] = (parts[-1][0] + piece, parts[-1][1])
            continue
        if not _asks(piece):
            context.append(piece)
            continue
        said = "，".join(context)
        shorter = None
        if context and _alnum(piece) > _SHORT_QUESTION and _alnum(said) > _TOPIC:
            # A full question after a statement: the statement was a request of its own.
            parts.append((said, None))
        elif context:
            if len(context) > 1:
                shorter = f"{_without_opener(context[0])}，{piece}"
            piece = f"{said}，{piece}"
        parts.append((piece, shorter))
        context = []
    if context:
        # A statement after the last question ("…？我要开发票") is a request of its own;
        # a turn of statements only ("我家宽带断了\n光猫灯是红的") is one.
        said = "，".join(context)
        bare = "，".join(_without_opener(c) for c in context)
        parts.append((said, bare if bare != said else None))
    if len(parts) > MAX_PARTS:
        parts[MAX_PARTS - 1 :] = [("".join(q for q, _ in parts[MAX_PARTS - 1 :]), None)]
    return parts


def numbered(parts: list[PartAnswer]) -> str:
    """One reply: each question quoted and answered, numbered; unanswered ones left to a
    person. All unanswered: the plain decline."""
    if all(p.said is None for p in parts):
        return NONE_ANSWERED
    # Questions one answer covers ("降档几号生效，有手续费吗" both in one rule) share it.
    groups: list[tuple[list[str], str | None]] = []
    for part in parts:
        asked = part.question.rstrip("？?。！!；;，,")
        if groups and part.said is not None and groups[-1][1] == part.said:
            groups[-1][0].append(asked)
        else:
            groups.append(([asked], part.said))
    if len(groups) == 1 and groups[0][1] is not None:
        return groups[0][1]
    lines = []
    for n, (asked_all, said) in enumerate(groups, 1):
        quoted = "和".join(f"“{a}”" for a in asked_all)
        lines.append(f"{n}. 关于{quoted}：{said if said is not None else UNANSWERED_PART}")
    return "\n".join(lines)


def sources(parts: list[PartAnswer]) -> tuple[Source, ...]:
    """The answering hits' sources, once each, in question order."""
    seen: dict[tuple[str, str], Source] = {}
    for p in parts:
        if p.hit is not None:
            seen.setdefault((p.hit.source, p.hit.section), Source(p.hit.source, p.hit.section))
    return tuple(seen.values())
