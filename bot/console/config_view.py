"""The effective configuration as the console shows it: every setting by its environment
name, secrets never shown (only whether they are set), passwords cut out of URLs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr

from bot.settings import Settings

SET, UNSET = "set", "unset"  # how a secret shows
_SECRET_NAME = re.compile(r"(secret|token|password|aes_key|api_key|encoding_key)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(//[^/:@]*:)[^@/]*@")
SECTIONS = (
    "core", "vllm", "dashscope", "embedding", "rerank", "agent", "orders", "handoff",
    "console", "webchat", "wecom", "wecom_kf", "wecom_aibot", "dingtalk", "feishu", "wechat_mp",
)  # fmt: skip


@dataclass(frozen=True)
class Setting:
    name: str  # the environment variable
    value: str
    secret: bool


def effective(settings: Settings) -> dict[str, list[Setting]]:
    """Section name → its settings, in declaration order."""
    return {name: _section(getattr(settings, name)) for name in SECTIONS}


def _section(model: BaseModel) -> list[Setting]:
    prefix = str(model.model_config.get("env_prefix", "") or "")
    found = []
    for field, info in type(model).model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else None
        env = alias or (prefix + field).upper()
        found.append(_shown(env, field, getattr(model, field)))
    return found


def _shown(env: str, field: str, value: Any) -> Setting:
    if isinstance(value, SecretStr):
        return Setting(env, SET if value.get_secret_value() else UNSET, True)
    if _SECRET_NAME.search(field) and isinstance(value, str):
        return Setting(env, SET if value else UNSET, True)
    text = "" if value is None else str(value)
    return Setting(env, _URL_PASSWORD.sub(r"\1•••@", text), False)
