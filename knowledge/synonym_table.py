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
rebuild and nothing that can go half-applied.

Each worker holds the list it read last (`current`) and re-reads it when `version`, a
cheap query (count and largest id of the rows), moves. Pairs are checked before they are
stored (`check`), each problem a one-line `SynonymError`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping

from sqlalchemy import func
from sqlmodel import Session, col, select

from knowledge.models import Synonym
from knowledge.text.tokenize import normalize

# The longest variant or standard word, in characters.
MAX_CHARS = 32
# The most pairs one deployment may hold (each query is matched against all of them).
MAX_PAIRS = 5_000

Tokenizer = Callable[[str], list[str]]


class SynonymError(ValueError):
    """A pair that cannot be stored, with the reason in one line."""


class Table:
    """Operator pairs grouped by standard word, matched in a query longest form first."""

    def __init__(self, pairs: Mapping[str, str] | None = None) -> None:
        self.pairs = dict(pairs or {})
        groups: dict[str, list[str]] = {}
        for variant, standard in self.pairs.items():
            groups.setdefault(standard, [standard]).append(variant)
        self._standard = {form: standard for standard, g in groups.items() for form in g}
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

    def standard(self, query: str) -> str:
        """`query` with each variant it says replaced by its standard word (normalised);
        `query` itself when it says none."""
        if self._pattern is None:
            return query
        normal = normalize(query)
        found = self._pattern.sub(lambda m: self._standard[m.group(0)], normal)
        return query if found == normal else found

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
        raise SynonymError("the variant and the standard word must both be given")
    for word in (v, c):
        if len(word) > MAX_CHARS:
            raise SynonymError(f"'{word[:40]}' is longer than {MAX_CHARS} characters")
        if any(ch.isspace() or ch == "=" for ch in word):
            raise SynonymError(f"'{word}' holds a space, line break or '=': one word each")
    if v == c:
        same = f"'{variant.strip()}' and '{canonical.strip()}'"
        raise SynonymError(f"{same} are the same word (the built-in list may already map them)")
    if v in existing:
        raise SynonymError(f"'{v}' is already a variant of '{existing[v]}'; remove it first")
    if c in existing:
        # A chain (a -> b -> c) or, with the reverse pair, a cycle.
        raise SynonymError(f"'{c}' is itself a variant of '{existing[c]}'; use '{existing[c]}'")
    if v in existing.values():
        raise SynonymError(f"'{v}' is the standard word of other variants; it cannot be a variant")
    if len(existing) >= MAX_PAIRS:
        raise SynonymError(f"at most {MAX_PAIRS} pairs")
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
    session.commit()
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
            raise SynonymError(f"line {number}: write variant=standard word")
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
