"""EMBEDDING_*, RERANK_* and BOT_KB_NAMES settings, and the clients wiring builds from them."""

from __future__ import annotations

import pytest

from bot import wiring
from bot.errors import ConfigError
from bot.settings import Settings
from knowledge.embedding import DASHSCOPE_BASE_URL, DASHSCOPE_MODEL, HTTPEmbedder


def test_no_embedding_settings_means_keyword_search_only() -> None:
    settings = Settings.load(None)
    assert not settings.embedding.enabled
    assert wiring.embedder(settings) is None


def test_openai_compatible_endpoint() -> None:
    settings = Settings.load(
        None,
        embedding={"base_url": "http://127.0.0.1:9/v1/", "model": "bge-m3", "dim": 1024},
    )
    client = wiring.embedder(settings)
    assert isinstance(client, HTTPEmbedder)
    assert (client.base_url, client.model, client.dim, client.batch_size) == (
        "http://127.0.0.1:9/v1",
        "bge-m3",
        1024,
        32,
    )


def test_dashscope_provider_uses_its_defaults_and_key() -> None:
    settings = Settings.load(
        None, embedding={"provider": "DashScope"}, dashscope={"api_key": "sk-ds-test"}
    )
    client = wiring.embedder(settings)
    assert isinstance(client, HTTPEmbedder)
    assert (client.base_url, client.model, client.batch_size) == (
        DASHSCOPE_BASE_URL,
        DASHSCOPE_MODEL,
        10,
    )
    without_key = Settings.load(None, embedding={"provider": "dashscope"})
    with pytest.raises(ConfigError, match="DASHSCOPE_API_KEY"):
        wiring.embedder(without_key)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"provider": "cohere"}, "EMBEDDING_PROVIDER must be openai or dashscope"),
        ({"base_url": "http://x/v1", "model": "m", "fusion": "max"}, "rrf or weighted"),
        ({"base_url": "http://x/v1"}, "missing: EMBEDDING_MODEL"),
        ({"base_url": "http://x/v1", "model": "m", "fusion_weight": 1.5}, "fusion_weight"),
    ],
)
def test_bad_embedding_settings_are_clear_errors(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(None, embedding=section)


def test_rerank_settings() -> None:
    with pytest.raises(ConfigError, match="missing: RERANK_MODEL"):
        Settings.load(None, rerank={"base_url": "http://x/v1"})
    with pytest.raises(ConfigError, match="RERANK_PROVIDER must be"):
        Settings.load(None, rerank={"provider": "x"})
    assert not Settings.load(None).rerank.enabled


def test_kb_names() -> None:
    assert Settings.load(None).core.kb_name_list() == ["default"]
    names = Settings.load(None, core={"kb_names": " shop, manuals ,,"}).core.kb_name_list()
    assert names == ["shop", "manuals"]
    assert Settings.load(None, core={"kb_names": " , "}).core.kb_name_list() == ["default"]
