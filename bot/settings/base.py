"""The building blocks of every settings section: env prefixes, required fields, key checks."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError

_AES_KEY_RE = re.compile(r"^[A-Za-z0-9]{43}$")
_PLACEHOLDERS = {"changeme", "change-me", "xxx", "your-secret", "todo", "<secret>"}


def env_config(prefix: str) -> SettingsConfigDict:
    # populate_by_name: fields with a documented alias (e.g. WECHAT_API_BASE) also take their name.
    return SettingsConfigDict(
        env_prefix=prefix,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )


def check_aes_key(value: SecretStr, name: str) -> SecretStr:
    raw = value.get_secret_value()
    if raw and not _AES_KEY_RE.fullmatch(raw):
        raise ValueError(f"{name} must be the 43-character EncodingAESKey")
    return value


class Section(BaseSettings):
    """A settings section; `REQUIRED` lists the fields that switch it on together."""

    REQUIRED: ClassVar[tuple[str, ...]] = ()
    # The fields whose presence switches the section on (default: REQUIRED).
    TRIGGERS: ClassVar[tuple[str, ...]] = ()

    @property
    def prefix(self) -> str:
        """The section's environment prefix (``WECOM_``), as its `env_config` set it."""
        return self.model_config.get("env_prefix", "")

    def _value(self, name: str) -> str:
        value = getattr(self, name)
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        return "" if value is None else str(value)

    @property
    def enabled(self) -> bool:
        return any(self._value(name) for name in self.TRIGGERS or self.REQUIRED)

    def needs(self) -> tuple[str, ...]:
        """The fields this section needs as configured (REQUIRED, unless a mode says else)."""
        return self.REQUIRED

    def check(self) -> None:
        """Raise ConfigError when only part of the required variables are set."""
        if not self.enabled:
            return
        missing = [self.prefix + n.upper() for n in self.REQUIRED if not self._value(n)]
        if missing:
            raise ConfigError(
                f"{self.prefix.rstrip('_')} is partly configured; missing: {', '.join(missing)}"
            )
        for name in self.REQUIRED:
            if self._value(name).strip().lower() in _PLACEHOLDERS:
                raise ConfigError(f"{self.prefix}{name.upper()} holds a placeholder value")


def describe(exc: ValidationError) -> str:
    # pydantic's own message includes the input value: rebuild one without it.
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        lines.append(f"{where}: {err['msg']}")
    return "invalid configuration: " + "; ".join(lines)
