"""docker-compose.yml and the Dockerfile: valid, wired to the documented names and CLI verbs.

Needs the `docker-compose` binary (Debian: `apt-get install docker-compose`; `.ci/run`
installs it); no Docker engine is used.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # PyYAML, installed with dashscope

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"

DESIGN_VERBS = {"up", "serve", "worker", "chat", "simulate", "kb"}
REQUIRED_SECRETS = {"BOT_ADMIN_TOKEN": "admin-token-for-tests", "POSTGRES_PASSWORD": "pg-password"}


def cli_verbs() -> set[str]:
    """The subcommands `bot` really has, read from its argparse parser."""
    from bot.cli.main import build_parser

    parser = build_parser()
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    raise AssertionError("bot.cli.build_parser() has no subcommands")


def _docker_compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose is not installed; run 'apt-get install -y docker-compose' "
            "(no Docker engine needed) or .ci/run"
        )
    return binary


def _compose(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # An empty --env-file: a developer's .env beside the compose file must not leak in.
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    return subprocess.run(
        [_docker_compose(), "--env-file", str(env_file), "-f", str(COMPOSE), *args],
        env={**base, **(REQUIRED_SECRETS if env is None else env)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def config(tmp_path: Path) -> dict[str, Any]:
    """The compose file as docker-compose resolves it (interpolated, anchors merged)."""
    result = _compose(tmp_path, "config")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    return parsed


def _our_services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in config["services"].items() if "build" in svc}


def test_compose_file_is_valid(tmp_path: Path) -> None:
    result = _compose(tmp_path, "config", "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("secret", sorted(REQUIRED_SECRETS))
def test_missing_required_secret_is_refused_by_name(tmp_path: Path, secret: str) -> None:
    env = {k: v for k, v in REQUIRED_SECRETS.items() if k != secret}
    result = _compose(tmp_path, "config", "-q", env=env)
    assert result.returncode != 0
    assert f"set {secret}" in result.stderr


def test_services_running_our_image_use_real_cli_verbs(config: dict[str, Any]) -> None:
    verbs = cli_verbs()
    ours = _our_services(config)
    assert set(ours) == {"web", "worker"}
    for name, service in ours.items():
        command = service["command"]
        words = command.split() if isinstance(command, str) else list(command)
        if words[:1] == ["bot"]:
            words = words[1:]
        assert words, f"{name} has an empty command"
        assert words[0] in verbs, f"{name} runs 'bot {words[0]}', not a verb of bot.cli"
        assert words[0] in DESIGN_VERBS, f"{name} runs 'bot {words[0]}', not a DESIGN verb"
    assert ours["web"]["command"] == ["serve"]
    assert ours["worker"]["command"] == ["worker"]


def test_bot_services_are_wired_with_design_names(config: dict[str, Any]) -> None:
    for name, service in _our_services(config).items():
        env = service["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["VLLM_BASE_URL"] == "http://vllm:8000/v1"
        assert env["VLLM_MODEL"] == "qwen"
        assert env["BOT_ADMIN_TOKEN"] == REQUIRED_SECRETS["BOT_ADMIN_TOKEN"]
        assert env["DASHSCOPE_API_KEY"] == ""
        for platform_var in ("WECOM_CORP_ID", "DINGTALK_APP_KEY", "FEISHU_APP_ID"):
            assert platform_var in env
        assert service["restart"] == "unless-stopped"
        for dependency in ("redis", "postgres"):
            assert service["depends_on"][dependency]["condition"] == "service_healthy"


def test_vllm_serves_qwen_on_a_reserved_gpu_in_the_gpu_profile(config: dict[str, Any]) -> None:
    vllm = config["services"]["vllm"]
    assert vllm["profiles"] == ["gpu"]
    assert vllm["image"].startswith("vllm/vllm-openai")
    command = vllm["command"]
    assert command[command.index("--model") + 1].startswith("Qwen/")
    assert command[command.index("--served-model-name") + 1] == "qwen"
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"
    assert "gpu" in devices[0]["capabilities"]
    assert "healthcheck" in vllm


def test_long_running_services_have_healthchecks_and_restart(config: dict[str, Any]) -> None:
    services = config["services"]
    assert services["postgres"]["image"] == "pgvector/pgvector:pg16"
    assert services["redis"]["image"] == "redis:7"
    for name in ("redis", "postgres", "web", "vllm"):
        assert services[name]["healthcheck"]["test"], name
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name


def test_only_the_web_port_is_published(config: dict[str, Any]) -> None:
    published = {name for name, svc in config["services"].items() if svc.get("ports")}
    assert published == {"web"}


def test_required_secrets_have_no_defaults() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for secret in REQUIRED_SECRETS:
        assert re.search(r"\$\{" + secret + r":\?", text), secret
        assert not re.search(r"\$\{" + secret + r":?-", text), secret


def test_dockerfile_runs_bot_as_a_non_root_user_without_secrets() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert "pip install ." in text
    assert re.search(r'^ENTRYPOINT \["bot"\]', text, re.MULTILINE)
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users
    assert users[-1] not in {"root", "0"}
    env_lines = re.findall(r"^(?:ENV|ARG)\b.*(?:\n\s+.*)*", text, re.MULTILINE)
    for line in env_lines:
        assert not re.search(r"(TOKEN|SECRET|PASSWORD|API_KEY|AES_KEY)", line), line
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".env" in ignored
