"""docker-compose.yml and the Dockerfile: valid, wired to the documented names and CLI verbs.

Needs the `docker-compose` binary (Debian: `apt-get install docker-compose`; `.ci/run`
installs it); no Docker engine is used, but for the last test, which starts the stack and
asks it a question where an engine answers (skipped, with the reason, where none does).
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

# DESIGN.md's verbs, and `stream` (docs/operations.md#processes) for the long connections.
DESIGN_VERBS = {"up", "serve", "worker", "chat", "simulate", "kb", "stream"}
CONFIGURATION = REPO / "docs" / "configuration.md"
# Set by the compose file itself for the containers, whatever .env says.
PINNED = {
    "DATABASE_URL",
    "REDIS_URL",
    "BOT_ADMIN_TOKEN",
    "BOT_HOST",
    "BOT_PORT",
    "BOT_DATA_DIR",
    "BOT_KNOWLEDGE_DIR",
}
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
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    dotenv: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`docker-compose ARGS` with `dotenv` as the .env beside the compose file.

    The project directory is `tmp_path`, so a developer's own .env never leaks in: `.env`
    there is both what `${...}` reads and the services' env_file, as beside the real file.
    """
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in (dotenv or {}).items()))
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    return subprocess.run(
        [
            _docker_compose(),
            "--project-directory",
            str(tmp_path),
            "--env-file",
            str(env_file),
            "-f",
            str(COMPOSE),
            *args,
        ],
        env={**base, **(REQUIRED_SECRETS if env is None else env)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _config(tmp_path: Path, **dotenv: str) -> dict[str, Any]:
    """The compose file as docker-compose resolves it (interpolated, anchors merged)."""
    result = _compose(tmp_path, "config", dotenv=dotenv)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    return parsed


@pytest.fixture
def config(tmp_path: Path) -> dict[str, Any]:
    return _config(tmp_path)


def documented_settings() -> set[str]:
    """Every variable named in the first column of docs/configuration.md's tables."""
    names: set[str] = set()
    for line in CONFIGURATION.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*[A-Z0-9])`", line.split("|")[1]))
    return names


def _healthcheck_argv(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD", test
    return list(test[1:])


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
    assert set(ours) == {"web", "worker", "stream"}
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
    # Every app configured for a long connection (bot/cli/stream.py).
    assert ours["stream"]["command"] == ["stream"]


def test_bot_services_are_wired_with_design_names(config: dict[str, Any]) -> None:
    for name, service in _our_services(config).items():
        env = service["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["BOT_ADMIN_TOKEN"] == REQUIRED_SECRETS["BOT_ADMIN_TOKEN"]
        # Without the gpu profile nothing points at a `vllm` host that is not there, and
        # an empty setting never hides a built-in default (WECOM_API_BASE=…).
        assert not any("vllm" in str(value) for value in env.values()), name
        assert all(value != "" for value in env.values()), name
        assert service["restart"] == "unless-stopped"
        for dependency in ("redis", "postgres"):
            assert service["depends_on"][dependency]["condition"] == "service_healthy"


def test_every_documented_setting_in_dotenv_reaches_the_bot_services(tmp_path: Path) -> None:
    settings = documented_settings()
    assert {"HANDOFF_WAIT_ALERT_S", "AGENT_TOOLS", "DINGTALK_STREAM", "BOT_SECRET_KEY"} <= settings
    given = {name: f"value-of-{name.lower()}" for name in settings - PINNED}
    config = _config(tmp_path, **REQUIRED_SECRETS, **given)
    for name, service in _our_services(config).items():
        env = service["environment"]
        missing = sorted(k for k, v in given.items() if env.get(k) != v)
        assert not missing, f"{name} does not get {missing} from .env"


def test_container_paths_and_port_win_over_a_local_dotenv(tmp_path: Path) -> None:
    local = {"BOT_PORT": "9000", "BOT_HOST": "127.0.0.1", "BOT_DATA_DIR": "./data"}
    config = _config(tmp_path, **REQUIRED_SECRETS, **local, REDIS_URL="redis://127.0.0.1:6379/0")
    for name, service in _our_services(config).items():
        env = service["environment"]
        listens = (env["BOT_HOST"], env["BOT_PORT"], env["BOT_DATA_DIR"])
        assert listens == ("0.0.0.0", "8080", "/app/data"), name  # noqa: S104 - in a container
        assert env["BOT_KNOWLEDGE_DIR"] == "/app/knowledge"
        assert env["REDIS_URL"] == "redis://redis:6379/0"
    # BOT_PORT is the published port; the container listens on 8080.
    (port,) = config["services"]["web"]["ports"]
    assert (str(port["published"]), str(port["target"])) == ("9000", "8080")


def test_secrets_may_come_from_dotenv_alone(tmp_path: Path) -> None:
    result = _compose(tmp_path, "config", "-q", env={}, dotenv=REQUIRED_SECRETS)
    assert result.returncode == 0, result.stderr


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> "source:mode" of a service's volumes, in either syntax compose prints."""
    found = {}
    for volume in service["volumes"]:
        if isinstance(volume, str):
            source, target, mode = [*volume.split(":"), "rw"][:3]
        else:
            source, target = volume["source"], volume["target"]
            mode = "ro" if volume.get("read_only") else "rw"
        found[target] = f"{source}:{mode}"
    return found


def test_bot_toml_is_mounted_read_only_when_configured(tmp_path: Path) -> None:
    from bot.settings import apps as appconfig

    # The bot reads ./bot.toml of its working directory (WORKDIR /app) when it is a file.
    assert Path("/app") / appconfig.DEFAULT_FILE == Path("/app/bot.toml")
    assert re.search(r"^WORKDIR /app$", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE)
    default = _config(tmp_path, **REQUIRED_SECRETS)
    mine = _config(tmp_path, **REQUIRED_SECRETS, BOT_CONFIG_HOST_FILE="./bot.toml")
    for name in _our_services(default):
        # Nothing configured: /dev/null, which is not a file, so no named apps.
        assert _mounts(default["services"][name])["/app/bot.toml"] == "/dev/null:ro", name
        mounted = _mounts(mine["services"][name])["/app/bot.toml"]
        assert mounted == f"{tmp_path / 'bot.toml'}:ro", name
        assert "BOT_CONFIG_FILE" not in mine["services"][name]["environment"]
    assert not Path("/dev/null").is_file()


def test_vllm_serves_the_model_name_the_bot_asks_for_with_tool_calling(tmp_path: Path) -> None:
    gpu = {"VLLM_BASE_URL": "http://vllm:8000/v1", "VLLM_MODEL": "qwen2.5-7b"}
    config = _config(tmp_path, **REQUIRED_SECRETS, **gpu)
    command = config["services"]["vllm"]["command"]
    served = command[command.index("--served-model-name") + 1]
    for name, service in _our_services(config).items():
        assert service["environment"]["VLLM_MODEL"] == served == "qwen2.5-7b", name
        assert service["environment"]["VLLM_BASE_URL"] == "http://vllm:8000/v1"
    # The agent sends `tools` on every turn: vLLM refuses them without these two flags.
    assert "--enable-auto-tool-choice" in command
    assert command[command.index("--tool-call-parser") + 1] == "hermes"


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
    for name in ("redis", "postgres", "web", "worker", "stream", "vllm"):
        assert services[name]["healthcheck"]["test"], name
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name


def test_worker_and_stream_health_checks_are_real_bot_commands(config: dict[str, Any]) -> None:
    from bot.cli.main import build_parser

    services = config["services"]
    assert services["stream"]["profiles"] == ["stream"]
    for name, expected in (("worker", ["health", "worker"]), ("stream", ["health", "stream"])):
        argv = _healthcheck_argv(services[name])
        assert argv[0] == "bot", argv
        assert argv[1:] == expected
        args = build_parser().parse_args(argv[1:])
        assert (args.command, args.health_of) == tuple(expected)


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


def _engine_missing() -> str:
    """Why no Docker engine can run the stack here ("" when one can)."""
    docker = shutil.which("docker")
    if docker is None:
        return "the docker CLI is not installed"
    probe = subprocess.run(
        [docker, "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return "" if probe.returncode == 0 else "no Docker engine answers `docker info`"


def test_the_stack_starts_and_answers_a_customer(tmp_path: Path) -> None:
    """With a Docker engine: build the image, start web + worker + Redis + PostgreSQL as
    shipped, and have the web chat answer from the sample knowledge; then take it down."""
    missing = _engine_missing()
    if missing:
        pytest.skip(f"the compose smoke test starts containers: {missing}")
    import json
    import socket
    import time
    import urllib.request

    project = tmp_path / "checkout"  # the build context, with a .env of its own
    shutil.copytree(
        REPO,
        project,
        ignore=shutil.ignore_patterns(".git", ".venv", "data", "site", "__pycache__", ".env"),
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (project / ".env").write_text(
        "".join(f"{k}={v}\n" for k, v in {**REQUIRED_SECRETS, "BOT_PORT": port}.items())
    )
    compose = [_docker_compose(), "--project-directory", str(project), "-p", f"smoke{port}"]

    def sh(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*compose, *args],
            cwd=project,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    try:
        up = sh("up", "-d", "--build", timeout=1800)
        assert up.returncode == 0, up.stderr[-3000:]
        deadline = time.monotonic() + 300
        ready = False
        while time.monotonic() < deadline and not ready:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                    ready = r.status == 200
            except OSError:
                time.sleep(3)
        assert ready, sh("logs", "--tail", "50", timeout=60).stdout
        health = sh("exec", "-T", "worker", "bot", "health", "worker", timeout=60)
        assert health.returncode == 0, health.stdout + health.stderr
        ask = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/chat",
            data=json.dumps({"text": "发票怎么开"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(ask, timeout=60) as answer:  # noqa: S310 - loopback
            assert answer.status == 200
            assert "发票" in answer.read().decode()
    finally:
        sh("down", "-v", "--remove-orphans", timeout=300)
