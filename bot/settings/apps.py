"""Several apps per platform: `bot.toml` tables such as ``[wecom.sales]``.

The environment (and `.env`) configures each platform's ``default`` app; `bot.toml` (path
from BOT_CONFIG_FILE, else ``./bot.toml`` when it exists) adds named apps. A table's keys
are the fields of that platform's settings section without the env prefix (``corp_id``,
``secret``, ``token``, ``aes_key``, ``api_base``…), plus per-app agent options (``kb_names``,
``persona``, ``policy``, ``system_prompt``, and the small-talk texts ``greeting_text``,
``thanks_text``, ``goodbye_text``, ``identity_text``). ``"${NAME}"`` inside a string is
read from the environment (or the `.env` file), so the file itself need not hold secrets.

Each app is validated like its env section; errors name the file, the table and the keys,
never a value. Webhooks of a named app arrive on ``/webhooks/{platform}/{app}``.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dotenv import dotenv_values
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from bot.domain import DEFAULT_APP
from bot.errors import ConfigError
from bot.settings import platforms
from bot.settings.base import Section

if TYPE_CHECKING:
    from bot.settings.loader import Settings

APP_NAME_RE = re.compile(r"[a-z0-9_-]{1,32}")
DEFAULT_FILE = Path("bot.toml")

# The platforms that may have several apps, with their settings section.
SECTIONS = platforms.SECTIONS
# Besides the section's REQUIRED fields (微信客服's corp id comes from WECOM_CORP_ID in env).
_ALSO_REQUIRED: dict[str, tuple[str, ...]] = {"wecom_kf": ("corp_id",)}
_TEXT_KEYS = (
    "persona",
    "policy",
    "system_prompt",
    "greeting_text",
    "thanks_text",
    "goodbye_text",
    "identity_text",
)
_OPTION_KEYS = ("kb_names", *_TEXT_KEYS)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class AppOptions:
    """Per-app agent options; empty values mean the global settings."""

    kb_names: tuple[str, ...] = ()
    persona: str = ""
    policy: str = ""
    system_prompt: str = ""
    # Small talk without a model (AGENT_GREETING_TEXT …): this app's own words.
    greeting_text: str = ""
    thanks_text: str = ""
    goodbye_text: str = ""
    identity_text: str = ""


@dataclass(frozen=True)
class AppConfig:
    """One configured app of a platform: its credentials section and agent options."""

    platform: str
    name: str
    section: Section
    options: AppOptions


_file_only_models: dict[type[Section], type[Section]] = {}


def _file_only(model: type[Section]) -> type[Section]:
    """`model` reading only the values given to it: an app never inherits env credentials."""
    found = _file_only_models.get(model)
    if found is None:

        class FileOnly(model):  # type: ignore[valid-type,misc]
            @classmethod
            def settings_customise_sources(  # pydantic-settings passes these by name
                cls,
                settings_cls: type[BaseSettings],  # noqa: ARG003
                init_settings: PydanticBaseSettingsSource,
                env_settings: PydanticBaseSettingsSource,  # noqa: ARG003
                dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003
                file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
            ) -> tuple[PydanticBaseSettingsSource, ...]:
                return (init_settings,)

        FileOnly.__name__ = FileOnly.__qualname__ = model.__name__
        found = _file_only_models[model] = FileOnly
    return found


def config_path(settings: Settings) -> Path | None:
    """BOT_CONFIG_FILE, else ./bot.toml when it exists, else None."""
    configured = settings.core.config_file
    if configured is not None:
        if not configured.is_file():
            raise ConfigError(f"BOT_CONFIG_FILE: {configured} does not exist")
        return configured
    return DEFAULT_FILE if DEFAULT_FILE.is_file() else None


def apply(settings: Settings, env_file: str | Path | None) -> None:
    """Read the config file into `settings.apps` (a ``default`` table may define the default)."""
    path = config_path(settings)
    if path is None:
        return
    env = _env_values(env_file)
    for entry in load(path, env):
        current = getattr(settings, entry.platform)
        if entry.name == DEFAULT_APP and entry.section.enabled:
            if current.enabled:
                raise ConfigError(
                    f"{path} [{entry.platform}.default] conflicts with the "
                    f"{current.prefix}* environment variables: configure the default app "
                    "in one place"
                )
            setattr(settings, entry.platform, entry.section)
        settings.apps[(entry.platform, entry.name)] = entry


def load(path: Path, env: dict[str, str]) -> list[AppConfig]:
    """Parse and validate every app table of `path`; `env` resolves ``${NAME}``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {type(exc).__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    apps = []
    for platform, tables in data.items():
        if platform not in SECTIONS:
            raise ConfigError(
                f"{path} [{platform}]: unknown platform (known: {', '.join(SECTIONS)})"
            )
        if not isinstance(tables, dict):
            raise ConfigError(f"{path} {platform}: must be a table of apps, [{platform}.NAME]")
        for name, table in tables.items():
            where = f"{path} [{platform}.{name}]"
            if not isinstance(table, dict):
                raise ConfigError(
                    f"{path} [{platform}] key {name}: not an app table; "
                    f"write the app's keys under [{platform}.NAME]"
                )
            if not APP_NAME_RE.fullmatch(name):
                raise ConfigError(f"{where}: app names are 1-32 of a-z, 0-9, _ and -")
            apps.append(_app(where, platform, name, _substitute(where, table, env)))
    return apps


def _app(where: str, platform: str, name: str, table: dict[str, Any]) -> AppConfig:
    model = SECTIONS[platform]
    fields = set(model.model_fields)
    unknown = sorted(set(table) - fields - set(_OPTION_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown keys {', '.join(unknown)} "
            f"(known: {', '.join(sorted(fields | set(_OPTION_KEYS)))})"
        )
    values = {k: v for k, v in table.items() if k in fields}
    options = _options(where, {k: v for k, v in table.items() if k in _OPTION_KEYS})
    try:
        section = _file_only(model)(**values)
    except ValidationError as exc:
        problems = [
            f"{where} {'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        ]
        raise ConfigError("; ".join(problems)) from None
    if values or name != DEFAULT_APP:
        _check(where, platform, section)
    return AppConfig(platform, name, section, options)


def _check(where: str, platform: str, section: Section) -> None:
    required = section.needs() + _ALSO_REQUIRED.get(platform, ())
    missing = [n for n in required if not section._value(n)]
    if missing:
        raise ConfigError(f"{where} is partly configured; missing: {', '.join(missing)}")
    try:
        section.check()  # the platform's own rules (placeholders, token + aes_key pairs…)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _options(where: str, raw: dict[str, Any]) -> AppOptions:
    kb = raw.get("kb_names", [])
    if isinstance(kb, str):
        kb = [n.strip() for n in kb.split(",")]
    if not isinstance(kb, list) or not all(isinstance(n, str) for n in kb):
        raise ConfigError(f"{where} kb_names: must be a list of knowledge base names")
    texts = {}
    for key in _TEXT_KEYS:
        value = raw.get(key, "")
        if not isinstance(value, str):
            raise ConfigError(f"{where} {key}: must be a string")
        texts[key] = value
    return AppOptions(kb_names=tuple(n for n in kb if n.strip()), **texts)


def _substitute(where: str, table: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    def resolve(key: str, value: Any) -> Any:
        if isinstance(value, str):

            def lookup(match: re.Match[str]) -> str:
                found = env.get(match.group(1))
                if found is None:
                    raise ConfigError(
                        f"{where} {key}: environment variable {match.group(1)} is not set"
                    )
                return found

            return _ENV_REF.sub(lookup, value)
        if isinstance(value, list):
            return [resolve(key, v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(f"{key}.{k}", v) for k, v in value.items()}
        return value

    return {key: resolve(key, value) for key, value in table.items()}


def _env_values(env_file: str | Path | None) -> dict[str, str]:
    # The process environment wins over `.env`, as for the settings themselves.
    values: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ)
    return values


# --- lookups used by the wiring, the web process and the CLI ------------------------------


def section(settings: Settings, platform: str, app: str = DEFAULT_APP) -> Section | None:
    """The credentials section of `platform`/`app`, or None when that app is not configured."""
    if platform not in SECTIONS:
        return None
    if app == DEFAULT_APP:
        default: Section = getattr(settings, platform)
        return default if default.enabled else None
    entry = settings.apps.get((platform, app))
    return entry.section if entry is not None else None


def app_names(settings: Settings, platform: str) -> list[str]:
    """The configured apps of `platform`, the default one first."""
    names = [DEFAULT_APP] if getattr(settings, platform).enabled else []
    names += sorted(a for p, a in settings.apps if p == platform and a != DEFAULT_APP)
    return names


def configured(settings: Settings) -> list[tuple[str, str, Section]]:
    """Every configured (platform, app, section), platforms in a stable order."""
    found = []
    for platform in SECTIONS:
        for app in app_names(settings, platform):
            sec = section(settings, platform, app)
            if sec is not None:
                found.append((platform, app, sec))
    return found


def options(settings: Settings, platform: str | None, app: str = DEFAULT_APP) -> AppOptions:
    """The agent options of `platform`/`app` (empty for apps without any)."""
    if platform is None:
        return AppOptions()
    entry = settings.apps.get((platform, app))
    return entry.options if entry is not None else AppOptions()


def stream_apps(settings: Settings) -> list[tuple[str, str]]:
    """The (platform, app) pairs that receive through a long connection (``stream = true``)."""
    return [
        (platform, app)
        for platform, app, sec in configured(settings)
        if (platform in ("dingtalk", "feishu") and getattr(sec, "stream", False))
        or (platform == "wecom_aibot" and getattr(sec, "mode", "") == "longconn")
    ]
