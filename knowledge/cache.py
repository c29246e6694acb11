"""The knowledge index a process answers from, kept current as documents change.

A `KnowledgeIndex` is a `Retriever` over the knowledge bases of one database. Every
`max_age_s` one caller checks `store.version` and, when it moved, updates the index (an
in-memory keyword index re-reads only the documents that changed, `Refreshable`) or
rebuilds it, while the others keep answering from the current one; only the very first
build makes callers wait.
Without those knowledge bases in the database, a folder of files is indexed once instead.
Search is CPU work (and maybe an embedding call): async callers run it in a thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence, Sized
from pathlib import Path
from typing import Protocol, runtime_checkable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from knowledge import store, synonym_table
from knowledge.base import Hit, Retriever

log = logging.getLogger(__name__)

# Builds the index of knowledge bases `names` from the database (None: nothing to index).
Build = Callable[[Session, Sequence[str]], Retriever | None]


@runtime_checkable
class Refreshable(Protocol):
    """A retriever that can follow the store's changes document by document."""

    def refreshed(self, session: Session) -> Retriever | None:
        """Up to date with the store; None when it must be built again instead."""
        ...


class KnowledgeIndex:
    """The knowledge bases `names` as one retriever, rebuilt when they change."""

    def __init__(
        self,
        engine: Engine,
        names: Sequence[str],
        build: Build,
        *,
        folder: Path | None = None,
        max_age_s: float = 5.0,
    ) -> None:
        self._engine = engine
        self._names = tuple(names)
        self._build = build
        self._folder = folder
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._version: str | None = None
        self._retriever: Retriever | None = None
        self._checked_at = -math.inf
        self._folder_retriever: Retriever | None = None
        self._folder_lock = threading.Lock()

    def search(self, query: str, k: int = 5) -> list[Hit]:
        found = self.current()
        return found.search(query, k) if found is not None else []

    def current(self) -> Retriever | None:
        """The index as of the last check (checking first when `max_age_s` has passed)."""
        if time.monotonic() - self._checked_at >= self._max_age_s:
            self._check()
        if self._retriever is not None or self._version:
            return self._retriever
        return self._from_folder()

    def _check(self) -> None:
        # One thread checks (and rebuilds) while the others keep answering from the current
        # index; only the very first check makes the others wait for its result.
        if not self._lock.acquire(blocking=self._version is None):
            return
        try:
            if time.monotonic() - self._checked_at >= self._max_age_s:
                self._refresh()
        finally:
            self._lock.release()

    def _refresh(self) -> None:
        try:
            with Session(self._engine) as session:
                self._refresh_synonyms(session)
                versions = [store.version(session, name) for name in self._names]
                current = ";".join(versions) if any(versions) else ""
                if current != self._version:
                    built = None
                    if current and self._version and isinstance(self._retriever, Refreshable):
                        # Only the documents that changed are read and tokenized again.
                        built = self._retriever.refreshed(session)
                    if built is None:
                        built = self._build(session, self._names) if current else None
                    log.info(
                        "knowledge index rebuilt: version %s, %d entries",
                        current,
                        len(built) if isinstance(built, Sized) else 0,
                    )
                    self._retriever = built
                    self._version = current
        except SQLAlchemyError:
            # Keep answering from what we have; the next check tries again.
            log.exception("cannot read the knowledge base from the database")
            if self._version is None:
                self._version = ""
        self._checked_at = time.monotonic()

    @staticmethod
    def _refresh_synonyms(session: Session) -> None:
        # The operator's synonyms apply to queries only: re-read, nothing rebuilt. Without
        # them (a database the list cannot be read from) the documents still refresh.
        try:
            synonym_table.refresh(session)
        except SQLAlchemyError:
            log.exception("cannot read the operator's synonyms; keeping the list read last")
            session.rollback()

    def _from_folder(self) -> Retriever | None:
        with self._folder_lock:
            if self._folder_retriever is None and self._folder is not None:
                from knowledge.search.retrieval import (
                    KeywordRetriever,  # only workers need the index
                )

                if self._folder.is_dir():
                    self._folder_retriever = KeywordRetriever.from_folder(self._folder)
                else:
                    log.warning(
                        "knowledge folder %s not found; answering without a knowledge base",
                        self._folder,
                    )
                self._folder = None
            return self._folder_retriever
