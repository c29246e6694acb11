"""`bot doctor` typed as a user types it, against the fake platform and model servers with
one failure injected at a time: each says ✗ with what to do, exit status 1; all good is 0."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from sqlmodel import Session

from bot.db.engine import get_engine
from bot.settings import Settings
from bot.web.app import create_app
from knowledge import store
from knowledge.embedding import HTTPEmbedder
from tests.fakes.base import serve
from tests.fakes.embedding_server import EmbeddingFakeState, embedding_app
from tests.fakes.feishu_api import FeishuFakeState, make_feishu_app
from tests.fakes.openai_server import LLMFakeState, error_body, openai_app, pictures_sent
from tests.fakes.wecom_api import WeComFakeState
from tests.integration.conftest import REPO, WeComApp

BOT = Path(sys.executable).parent / "bot"
# What vLLM answers a request with tools when started without tool calling.
VLLM_NO_TOOLS = (
    '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
)

# A user's shell: none of the bot's settings exported (the test passes what it means).
SETTINGS = (
    *("WECOM_", "DINGTALK_", "FEISHU_", "WECHAT_", "VLLM_", "DASHSCOPE_", "EMBEDDING_"),
    *("BOT_", "REDIS_", "DATABASE_", "TEST_", "RERANK_"),
)


@pytest.fixture
def model() -> Iterator[tuple[LLMFakeState, str]]:
    state = LLMFakeState()
    with serve(openai_app(state)) as url:
        yield state, url


@pytest.fixture
def setup(
    tmp_path: Path,
    redis_url: str,
    wecom_app: WeComApp,
    wecom_api: tuple[WeComFakeState, str],
    model: tuple[LLMFakeState, str],
) -> dict[str, str]:
    """A configured setup where every check passes: Redis, SQLite, a WeCom app, vLLM."""
    return {
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
        **wecom_app.env(wecom_api[1]),
        "VLLM_BASE_URL": f"{model[1]}/v1",
        "VLLM_MODEL": model[0].model,
        "BOT_PUBLIC_URL": "https://bot.example.com",
    }


def _doctor(cwd: Path, env: dict[str, str]) -> tuple[int, list[str]]:
    command = [str(BOT)] if BOT.is_file() else [sys.executable, "-m", "bot.cli"]
    shell = {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS)}
    result = subprocess.run(
        [*command, "doctor"],
        cwd=cwd,
        env={**shell, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result.returncode, result.stdout.splitlines()


def _line(lines: list[str], start: str | tuple[str, ...]) -> str:
    found = [line for line in lines if line.startswith(start)]
    assert len(found) == 1, lines
    return found[0]


def test_all_good_passes_every_check(
    tmp_path: Path, setup: dict[str, str], model: tuple[LLMFakeState, str]
) -> None:
    code, lines = _doctor(tmp_path, setup)
    assert code == 0, lines
    assert _line(lines, "✓ Redis: version ")
    assert _line(lines, "✓ database: sqlite ")
    assert _line(lines, "✓ wecom token: fetched, valid 7200 s")
    assert _line(lines, "✓ wecom callback key")
    assert _line(lines, "✓ BOT_PUBLIC_URL: https://bot.example.com")
    assert _line(lines, "✓ model vllm")
    assert _line(lines, "– embedding")
    sent = model[0].matching("/chat/completions")
    assert [tool["function"]["name"] for tool in sent[0].json["tools"]] == ["ping"]


def test_wrong_secret_is_errcode_40001_explained(tmp_path: Path, setup: dict[str, str]) -> None:
    code, lines = _doctor(tmp_path, {**setup, "WECOM_SECRET": "not-the-secret"})
    assert code == 1
    line = _line(lines, "✗ wecom token: errcode 40001")
    assert "wrong secret" in line
    assert "核对 WECOM_SECRET" in line
    assert "fix: check WECOM_SECRET" in line
    assert _line(lines, "✓ model vllm")  # the other checks still ran


def test_malformed_aes_key_says_what_the_key_must_be(tmp_path: Path, setup: dict[str, str]) -> None:
    code, lines = _doctor(tmp_path, {**setup, "WECOM_AES_KEY": "too-short+/="})
    assert code == 1
    line = _line(lines, "✗ configuration: ")
    assert "WECOM_AES_KEY must be the 43-character EncodingAESKey" in line
    assert "43 位字母数字" in line
    assert "fix: the EncodingAESKey is the console's 43 letters and digits" in line
    assert "too-short" not in line  # a secret is never echoed


def test_model_server_refusing_tools_says_to_enable_tool_calling(
    tmp_path: Path, setup: dict[str, str], model: tuple[LLMFakeState, str]
) -> None:
    model[0].fail_from_now(400, body=error_body(400, VLLM_NO_TOOLS))
    code, lines = _doctor(tmp_path, setup)
    assert code == 1
    line = _line(lines, "✗ model vllm: ")
    assert "refused a request with tools (400)" in line
    assert "fix: start vLLM with --enable-auto-tool-choice --tool-call-parser hermes" in line
    assert _line(lines, "✓ wecom token")


@pytest.mark.parametrize("sees", [True, False], ids=["vision model", "text-only model"])
def test_vision_setting_is_checked_with_a_picture(
    tmp_path: Path, setup: dict[str, str], model: tuple[LLMFakeState, str], sees: bool
) -> None:
    model[0].vision = sees
    code, lines = _doctor(tmp_path, {**setup, "VLLM_VISION": "true"})
    assert _line(lines, "✓ model vllm")
    if sees:
        assert code == 0, lines
        assert _line(lines, "✓ vision vllm: the model accepted a picture")
        (asked,) = [r for r in model[0].matching("/chat/completions") if "tools" not in r.json]
        assert len(pictures_sent(asked.json["messages"])) == 1
    else:
        assert code == 1
        line = _line(
            lines, "✗ vision vllm: VLLM_VISION=true, but the model refused a picture (400)"
        )
        assert "fix: serve a vision-language model on vLLM" in line


def test_unreachable_model_url_says_so(tmp_path: Path, setup: dict[str, str]) -> None:
    code, lines = _doctor(tmp_path, {**setup, "VLLM_BASE_URL": "http://127.0.0.1:1/v1"})
    assert code == 1
    line = _line(lines, "✗ model vllm: cannot reach http://127.0.0.1:1/v1")
    assert "VLLM_BASE_URL" in line
    assert [line for line in lines if line.startswith("✗")] == [line]


def test_embedding_dimension_against_the_stored_vectors(
    tmp_path: Path, redis_url: str, fresh_database: Callable[[], str]
) -> None:
    database = fresh_database()
    faq = tmp_path / "faq.md"
    faq.write_text("# 退货\n\n七天内可以无理由退货。\n", encoding="utf-8")
    stored, other = EmbeddingFakeState(dim=32), EmbeddingFakeState(dim=48)
    with serve(embedding_app(stored)) as stored_url, serve(embedding_app(other)) as other_url:
        embedder = HTTPEmbedder(f"{stored_url}/v1", stored.model)
        with embedder, Session(get_engine(database)) as session:
            store.ingest(session, "default", faq, embedder=embedder)
        env = {"REDIS_URL": redis_url, "DATABASE_URL": database, "EMBEDDING_MODEL": stored.model}
        code, lines = _doctor(tmp_path, {**env, "EMBEDDING_BASE_URL": f"{stored_url}/v1"})
        assert code == 0, lines
        assert _line(lines, "✓ embedding: fake-bge-m3: 32 dimensions, as the stored vectors")
        dialect = database.split(":", 1)[0].split("+", 1)[0]
        database_line = _line(lines, ("✓ database: ", "! database: "))
        assert dialect in database_line
        if dialect == "postgresql":
            assert "pgvector" in database_line

        code, lines = _doctor(tmp_path, {**env, "EMBEDDING_BASE_URL": f"{other_url}/v1"})
    assert code == 1
    line = _line(
        lines, "✗ embedding: fake-bge-m3 answers 48 dimensions, the stored vectors have 32"
    )
    assert line.split(" — ")[0].endswith("have 32")
    assert "bot kb reindex" in line


def test_public_url_is_checked_as_the_platform_checks_it(
    tmp_path: Path,
    setup: dict[str, str],
    make_settings: Callable[..., Settings],
    wecom_app: WeComApp,
    wecom_api: tuple[WeComFakeState, str],
) -> None:
    # The deployment behind the public URL: a real web app with the same WeCom keys.
    settings = make_settings(wecom=wecom_app.section(wecom_api[1]))
    with serve(create_app(settings)) as url:
        code, lines = _doctor(tmp_path, {**setup, "BOT_PUBLIC_URL": url})
    assert code == 0, lines
    assert _line(lines, f"✓ wecom public URL: {url}/webhooks/wecom answers the URL check")


def test_public_url_serving_other_keys_fails_with_what_to_do(
    tmp_path: Path,
    setup: dict[str, str],
    make_settings: Callable[..., Settings],
    wecom_app: WeComApp,
    wecom_api: tuple[WeComFakeState, str],
) -> None:
    # An old deployment answers there: same app, another Token.
    section = {**wecom_app.section(wecom_api[1]), "token": "an-older-token"}
    with serve(create_app(make_settings(wecom=section))) as url:
        code, lines = _doctor(tmp_path, {**setup, "BOT_PUBLIC_URL": url})
    assert code == 1
    line = _line(lines, "✗ wecom public URL: ")
    assert "refused the check signed with this host's keys" in line
    assert "fix: the server behind that URL has another Token" in line


def test_public_url_answered_by_something_else_fails(tmp_path: Path, setup: dict[str, str]) -> None:
    async def welcome(_: web.Request) -> web.Response:
        return web.Response(text="<html>welcome</html>", content_type="text/html")

    other = web.Application()
    other.router.add_get("/{tail:.*}", welcome)
    with serve(other) as url:
        code, lines = _doctor(tmp_path, {**setup, "BOT_PUBLIC_URL": url})
    assert code == 1
    line = _line(lines, "✗ wecom public URL: ")
    assert "answered HTTP 200 without the echo" in line
    assert "forward /webhooks/ to bot serve" in line


def test_public_url_this_host_cannot_reach_is_a_warning(
    tmp_path: Path, setup: dict[str, str]
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    code, lines = _doctor(tmp_path, {**setup, "BOT_PUBLIC_URL": closed})
    assert code == 0, lines  # the platform may still reach it (NAT hairpinning)
    assert "NAT" in _line(lines, "! wecom public URL: ")


def test_missing_feishu_scope_and_untrusted_ip_say_what_to_enable(
    tmp_path: Path, setup: dict[str, str], wecom_api: tuple[WeComFakeState, str]
) -> None:
    feishu = FeishuFakeState(cardkit_scope=False, message_scope=False)
    wecom_api[0].untrusted_ip = "203.0.113.7"
    env = {
        **setup,
        "FEISHU_APP_ID": feishu.app_id,
        "FEISHU_APP_SECRET": feishu.app_secret,
        "FEISHU_VERIFICATION_TOKEN": "doctor-token",
        "FEISHU_STREAMING_CARDS": "true",
    }
    with serve(make_feishu_app(feishu)) as url:
        code, lines = _doctor(tmp_path, {**env, "FEISHU_API_BASE": url})
    assert code == 1
    assert _line(lines, "✓ feishu token")
    assert "fix: enable im:message" in _line(lines, "✗ feishu scope im:message: errcode 99991672")
    assert "unset FEISHU_STREAMING_CARDS" in _line(lines, "✗ feishu scope cardkit:card:write: ")
    assert feishu.sent == []
    line = _line(lines, "✗ wecom trusted IP: errcode 60020")
    assert "fix: add 203.0.113.7 under 应用管理 → the app → 企业可信IP" in line


@pytest.mark.parametrize("served", ["qwen-vl-max", ""], ids=["vision model", "no such model"])
def test_dashscope_vision_model_is_checked_with_a_picture(
    tmp_path: Path, setup: dict[str, str], served: str
) -> None:
    from tests.fakes.dashscope_server import (
        BASE_PATH,
        MULTIMODAL_PATH,
        dashscope_app,
        pictures_received,
    )

    state = LLMFakeState(model="qwen-plus", api_key="sk-doctor", vision_model=served)
    with serve(dashscope_app(state)) as url:
        code, lines = _doctor(
            tmp_path,
            {
                **setup,
                "DASHSCOPE_API_KEY": "sk-doctor",
                "DASHSCOPE_BASE_URL": f"{url}{BASE_PATH}",
                "DASHSCOPE_VISION_MODEL": "qwen-vl-max",
            },
        )
    assert _line(lines, "✓ model dashscope")
    if served:
        assert code == 0, lines
        assert _line(lines, "✓ vision dashscope: the model accepted a picture")
        (asked,) = state.matching(MULTIMODAL_PATH)
        assert asked.json["model"] == "qwen-vl-max"
        assert len(pictures_received(asked.json["input"]["messages"])) == 1
    else:
        assert code == 1
        line = _line(
            lines,
            "✗ vision dashscope: DASHSCOPE_VISION_MODEL is set, but the model refused a picture "
            "(400)",
        )
        assert "fix: set DASHSCOPE_VISION_MODEL to a vision model" in line
