"""The model endpoint's proxy comes from the environment once, as trust_env found it."""

from __future__ import annotations

import pytest

from bot.llm import openai_wire
from bot.llm.openai_compat import OpenAICompatClient


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent/netrc")


def test_no_proxy_in_the_environment_means_none() -> None:
    assert openai_wire.env_proxy("https://llm.example.com/v1") == (None, None)


def test_the_scheme_s_proxy_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    proxy, auth = openai_wire.env_proxy("https://llm.example.com/v1")
    assert proxy == "http://proxy.internal:3128"
    assert auth is None
    assert openai_wire.env_proxy("http://vllm:8000/v1") == (None, None)  # no HTTP_PROXY


def test_no_proxy_hosts_go_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://user:pw@proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "vllm,localhost")
    assert openai_wire.env_proxy("http://vllm:8000/v1") == (None, None)
    proxy, auth = openai_wire.env_proxy("http://other:8000/v1")
    assert proxy == "http://proxy.internal:3128"
    assert auth is not None
    assert auth.login == "user"


def test_the_client_keeps_what_it_found_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    client = OpenAICompatClient("vllm", "https://llm.example.com/v1", "m")
    assert client._endpoint.proxy == "http://proxy.internal:3128"
