"""The operator's synonyms: product nicknames and a shop's own words, editable live.

The built-in list (`knowledge.text.synonyms`) rewrites general wording variants in both
the indexed text and the query. The operator's pairs (扫地机 = 扫地机器人, a `Synonym`
row each, one list for every knowledge base) are applied **to the query only**: a query
holding one form of a pair is searched with the tokens of every other form of that pair
added (the variant's and the standard word's, whichever the query did not say), so a
question saying 扫地机 finds a passage saying 扫地机器人 and the other way round. Stored
tokens (the in-process index, PostgreSQL's ``knowledge_lex``) never depend on this list,
so a change needs no re-indexing: it applies to the next query of every worker once its
knowledge index has looked again (`KnowledgeIndex`, every few seconds), with nothing to
rebuild and nothing that can go half-applied. Without a model the agent's judge also
reads each candidate in the customer's words (`Table.in_words_of`).

Each worker holds the list it read last (`current`) and re-reads it when `version`, a
cheap query (count and largest id of the rows), moves. Pairs are checked before they are
stored (`check`), each problem a one-line `SynonymError`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from knowledge.models import Synonym
from knowledge.text.tokenize import normalize

# The longest variant or standard word, in characters.
MAX_CHARS = 32
# The most pairs one deployment may hold (each query is matched against all of them).
MAX_PAIRS = 5_000

Tokenizer = Callable[[str], list[str]]


# Why a pair is refused: `SynonymError.code`, and its English sentence (the console has
# its own words for each code, with the same values).
EMPTY, TOO_LONG, NOT_ONE_WORD, SAME = "empty", "too_long", "not_one_word", "same"
ALREADY, CHAIN, IS_STANDARD, TOO_MANY, BAD_LINE = (
    "already",
    "chain",
    "is_standard",
    "too_many",
    "bad_line",
)
REASONS = {
    EMPTY: "the variant and the standard word must both be given",
    TOO_LONG: "'{word}' is longer than {n} characters",
    NOT_ONE_WORD: "'{word}' holds a space, line break or '=': one word each",
    SAME: "'{variant}' and '{standard}' are the same word (the built-in list may already map them)",
    ALREADY: "'{variant}' is already a variant of '{standard}'; remove it first",
    CHAIN: "'{word}' is itself a variant of '{standard}'; use '{standard}'",
    IS_STANDARD: "'{variant}' is the standard word of other variants; it cannot be a variant",
    TOO_MANY: "at most {n} pairs",
    BAD_LINE: "line {n}: write variant=standard word",
}


class SynonymError(ValueError):
    """A pair that cannot be stored: `code` (one of REASONS) and the reason in one line."""

    def __init__(self, code: str, **values: object) -> None:
        super().__init__(REASONS[code].format(**values))
        self.code = code
        self.values = values


class Table:
    """Operator pairs grouped by standard word, matched in a query longest form first."""

    def __init__(self, pairs: Mapping[str, str] | None = None) -> None:
        self.pairs = dict(pairs or {})
        groups: dict[str, list[str]] = {}
        for variant, standard in self.pairs.items():
            groups.setdefault(standard, [standard]).append(variant)
        # every form -> all the forms of its group
        self._forms = {form: group for group in groups.values() for form in group}
        forms = sorted(self._forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, forms))) if forms else None

    def __len__(self) -> int:
        return len(self.pairs)

    def alternatives(self, query: str) -> list[str]:
        """The forms the normalised `query` did not say, of each pair it mentions."""
        if self._pattern is None:
            return []
        said = set(self._pattern.findall(normalize(query)))
        out: list[str] = []
        for form in said:
            out.extend(f for f in self._forms[form] if f not in said and f not in out)
        return out

    def in_words_of(self, query: str, text: str) -> str:
        """`text` (normalised) with the other forms of each pair `query` mentions replaced
        by the form `query` says; `text` itself when `query` mentions none."""
        if self._pattern is None:
            return text
        said = self._pattern.findall(normalize(query))
        mapping: dict[str, str] = {}
        for form in said:
            for other in self._forms[form]:
                if other not in said:
                    mapping.setdefault(other, form)
        if not mapping:
            return text
        # The forms said stay as they are, even inside a longer one (扫地机 in 扫地机器人).
        mapping.update((form, form) for form in said)
        others = sorted(mapping, key=len, reverse=True)
        pattern = re.compile("|".join(map(re.escape, others)))
        return pattern.sub(lambda m: mapping[m.group(0)], normalize(text))

    def expand(self, query: str, tokenizer: Tokenizer) -> list[str]:
        """`tokenizer(query)` plus the tokens of the forms it did not say, each new token
        once (so shared characters are not counted twice)."""
        tokens = tokenizer(query)
        others = self.alternatives(query)
        if not others:
            return tokens
        have = set(tokens)
        for other in others:
            for token in tokenizer(other):
                if token not in have:
                    have.add(token)
                    tokens.append(token)
        return tokens


def clean(word: str) -> str:
    """A form as queries are matched: NFKC, lower case, the built-in variants mapped."""
    return normalize(word.strip())


def check(variant: str, canonical: str, existing: Mapping[str, str]) -> tuple[str, str]:
    """The pair as stored (both `clean`), or a `SynonymError` saying what is wrong with it.

    `existing` is the stored list (variant -> standard word).
    """
    v, c = clean(variant), clean(canonical)
    if not v or not c:
        raise SynonymError(EMPTY)
    for word in (v, c):
        if len(word) > MAX_CHARS:
            raise SynonymError(TOO_LONG, word=word[:40], n=MAX_CHARS)
        if any(ch.isspace() or ch == "=" for ch in word):
            raise SynonymError(NOT_ONE_WORD, word=word)
    if v == c:
        raise SynonymError(SAME, variant=variant.strip(), standard=canonical.strip())
    if v in existing:
        raise SynonymError(ALREADY, variant=v, standard=existing[v])
    if c in existing:
        # A chain (a -> b -> c) or, with the reverse pair, a cycle.
        raise SynonymError(CHAIN, word=c, standard=existing[c])
    if v in existing.values():
        raise SynonymError(IS_STANDARD, variant=v)
    if len(existing) >= MAX_PAIRS:
        raise SynonymError(TOO_MANY, n=MAX_PAIRS)
    return v, c


def load(session: Session) -> dict[str, str]:
    """The stored list, variant -> standard word."""
    rows = session.exec(select(Synonym).order_by(col(Synonym.canonical), col(Synonym.variant)))
    return {row.variant: row.canonical for row in rows}


def add(session: Session, variant: str, canonical: str) -> Synonym:
    """Check and store one pair (commits); `SynonymError` when it cannot be stored."""
    v, c = check(variant, canonical, load(session))
    row = Synonym(variant=v, canonical=c)
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # the same variant added by someone else meanwhile
        session.rollback()
        raise SynonymError(ALREADY, variant=v, standard=load(session).get(v, c)) from None
    session.refresh(row)
    return row


def remove(session: Session, variant: str) -> Synonym | None:
    """Delete the pair of `variant` (commits); None when there is none."""
    row = session.exec(select(Synonym).where(col(Synonym.variant) == clean(variant))).first()
    if row is not None:
        session.delete(row)
        session.commit()
    return row


def parse_lines(lines: Iterable[str]) -> list[tuple[int, str, str]]:
    """`变体=标准词` lines as (line number, variant, standard word); blank lines and
    lines starting with # skipped; a line without '=' is a `SynonymError` naming it."""
    out = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        variant, eq, standard = line.partition("=")
        if not eq:
            raise SynonymError(BAD_LINE, n=number)
        out.append((number, variant, standard))
    return out


def version(session: Session) -> str:
    """Changes whenever a pair is added or removed (rows are never edited in place)."""
    count, largest = session.exec(select(func.count(), func.max(Synonym.id))).one()
    return f"{count}:{largest or 0}"


_lock = threading.Lock()
_current = Table()
_version: str | None = None


def current() -> Table:
    """The list this process read last (empty until `refresh`)."""
    return _current


def refresh(session: Session) -> bool:
    """Re-read the stored list when its version moved; whether it did."""
    global _current, _version
    seen = version(session)
    if seen == _version:
        return False
    with _lock:
        _current = Table(load(session))
        _version = seen
    return True


def reset() -> None:
    """Forget the list read (a test, or a process about to read another database)."""
    global _current, _version
    with _lock:
        _current, _version = Table(), None


def expand(query: str, tokenizer: Tokenizer) -> list[str]:
    """A query's tokens with this process's operator synonyms (`Table.expand`)."""
    return _current.expand(query, tokenizer)
