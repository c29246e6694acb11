"""What the web process builds once for its admin routes: bindings, knowledge indexes."""

from __future__ import annotations

from functools import cached_property

from bot import wiring
from bot.db.engine import get_engine
from bot.orders.bindings import BindingStore
from bot.settings import Settings
from knowledge.cache import KnowledgeIndex
from knowledge.embedding import Embedder


class WebParts:
    """Built on first use and kept for the life of the web app; closed at its cleanup."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine = get_engine(settings.core.effective_database_url())
        self._knowledge: dict[str, KnowledgeIndex] = {}

    @cached_property
    def bindings(self) -> BindingStore:
        return wiring.binding_store(self.settings, self._engine)

    @cached_property
    def embedder(self) -> Embedder | None:
        return wiring.embedder(self.settings)

    def knowledge(self, kb: str) -> KnowledgeIndex:
        """Knowledge base `kb` as the admin search sees it, rebuilt when it changes."""
        found = self._knowledge.get(kb)
        if found is None:
            found = self._knowledge[kb] = wiring.knowledge_index(
                self.settings,
                self._engine,
                [kb],
                embedding=self.embedder,
                rerank=wiring.reranker(self.settings),
                max_age_s=0,  # every search checks the version: an upload shows at once
                folder=None,
            )
        return found

    def close(self) -> None:
        if "embedder" in self.__dict__ and self.embedder is not None:
            self.embedder.close()
        if "bindings" in self.__dict__:
            self.bindings.close()
