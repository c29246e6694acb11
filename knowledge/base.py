"""What a retriever returns and offers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved passage or FAQ entry.

    `score` is a confidence in [0, 1] the agent can compare to a threshold; `answer` is set
    for FAQ entries (the text matched is the question, the answer is what to say).
    """

    text: str
    source: str
    section: str
    score: float
    answer: str | None = None
    # An FAQ entry's other ways to ask (its similar questions), when the retriever has them.
    questions: tuple[str, ...] = ()

    @property
    def reply_text(self) -> str:
        return self.answer if self.answer is not None else self.text


class Retriever(Protocol):
    """Finds the passages that answer a query, best first."""

    def search(self, query: str, k: int = 5) -> list[Hit]: ...
