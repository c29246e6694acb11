"""Configuration from the environment and `.env`, names exactly as in DESIGN.md.

Each platform has one pydantic-settings model whose prefix matches its environment names;
`Settings` composes them. A platform with none of its variables set is off; one with only
some of them set is a `ConfigError` naming what is missing (never the values).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError

_AES_KEY_RE = re.compile(r"^[A-Za-z0-9]{43}$")
_PLACEHOLDERS = {"changeme", "change-me", "xxx", "your-secret", "todo", "<secret>"}


def _env_config(prefix: str) -> SettingsConfigDict:
    # populate_by_name: fields with a DESIGN alias (e.g. WECHAT_API_BASE) also take their name.
    return SettingsConfigDict(
        env_prefix=prefix,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )


def _check_aes_key(value: SecretStr, name: str) -> SecretStr:
    raw = value.get_secret_value()
    if raw and not _AES_KEY_RE.fullmatch(raw):
        raise ValueError(f"{name} must be the 43-character EncodingAESKey")
    return value


class _Section(BaseSettings):
    """A settings section; `REQUIRED` lists the fields that switch it on together."""

    REQUIRED: ClassVar[tuple[str, ...]] = ()
    # The fields whose presence switches the section on (default: REQUIRED).
    TRIGGERS: ClassVar[tuple[str, ...]] = ()
    PREFIX: ClassVar[str] = ""

    def _value(self, name: str) -> str:
        value = getattr(self, name)
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        return "" if value is None else str(value)

    @property
    def enabled(self) -> bool:
        return any(self._value(name) for name in self.TRIGGERS or self.REQUIRED)

    def check(self) -> None:
        """Raise ConfigError when only part of the required variables are set."""
        if not self.enabled:
            return
        missing = [self.PREFIX + n.upper() for n in self.REQUIRED if not self._value(n)]
        if missing:
            raise ConfigError(
                f"{self.PREFIX.rstrip('_')} is partly configured; missing: {', '.join(missing)}"
            )
        for name in self.REQUIRED:
            if self._value(name).strip().lower() in _PLACEHOLDERS:
                raise ConfigError(f"{self.PREFIX}{name.upper()} holds a placeholder value")


class CoreSettings(BaseSettings):
    """DATABASE_URL, REDIS_URL and the BOT_* process settings."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    database_url: str = Field(default="", validation_alias="DATABASE_URL")
    redis_url: str = Field(default="", validation_alias="REDIS_URL")
    admin_token: SecretStr = Field(default=SecretStr(""), validation_alias="BOT_ADMIN_TOKEN")
    host: str = Field(default="0.0.0.0", validation_alias="BOT_HOST")  # noqa: S104 - server bind
    port: int = Field(default=8080, validation_alias="BOT_PORT")
    data_dir: Path = Field(default=Path("data"), validation_alias="BOT_DATA_DIR")
    knowledge_dir: Path = Field(
        default=Path("examples/knowledge"), validation_alias="BOT_KNOWLEDGE_DIR"
    )
    system_prompt: str = Field(default="", validation_alias="BOT_SYSTEM_PROMPT")
    history_turns: int = Field(default=10, validation_alias="BOT_HISTORY_TURNS")
    worker_concurrency: int = Field(default=64, validation_alias="BOT_WORKER_CONCURRENCY")
    # Must exceed the longest task: Redis redelivers unacked messages after this long.
    visibility_timeout_s: float = Field(
        default=900.0, validation_alias="BOT_BROKER_VISIBILITY_TIMEOUT_S"
    )
    # Per-conversation lock, renewed while a turn runs; a crashed worker's lock expires.
    lock_ttl_s: float = Field(default=30.0, validation_alias="BOT_CONVERSATION_LOCK_TTL_S")
    webchat_timeout_s: float = Field(default=90.0, validation_alias="BOT_WEBCHAT_TIMEOUT_S")
    # WeChat Official Account: how long a webhook request waits for the answer to return it
    # as the passive reply (WeChat hangs up at 5 s); 0 = always customer-service messages.
    mp_passive_wait_s: float = Field(
        default=4.5, ge=0, le=4.8, validation_alias="BOT_MP_PASSIVE_WAIT_S"
    )
    faq_min_score: float = Field(default=0.35, validation_alias="BOT_FAQ_MIN_SCORE")
    # An FAQ match at least this confident is the answer itself; no model is called.
    faq_direct_score: float = Field(default=0.8, validation_alias="BOT_FAQ_DIRECT_SCORE")
    # Largest admin API upload (all files of one request together), in bytes.
    upload_max_bytes: int = Field(default=20 << 20, validation_alias="BOT_UPLOAD_MAX_BYTES")
    log_level: str = Field(default="INFO", validation_alias="BOT_LOG_LEVEL")
    # Local trial mode: a built-in stand-in for the WeCom API (set by `bot up`).
    sandbox: bool = Field(default=False, validation_alias="BOT_SANDBOX")

    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'bot.db').as_posix()}"


class VLLMSettings(_Section):
    """Primary model: a vLLM (OpenAI-compatible) server."""

    model_config = _env_config("VLLM_")
    REQUIRED = ("base_url", "model")
    PREFIX = "VLLM_"

    base_url: str = ""
    model: str = ""
    api_key: SecretStr = SecretStr("")
    timeout_s: float = 30.0


class DashScopeSettings(_Section):
    """Fallback model: DashScope (Qwen)."""

    model_config = _env_config("DASHSCOPE_")
    REQUIRED = ("api_key",)
    PREFIX = "DASHSCOPE_"

    api_key: SecretStr = SecretStr("")
    model: str = "qwen-plus"
    base_url: str = ""
    timeout_s: float = 30.0

    def check(self) -> None:
        super().check()
        if self.base_url and not self.enabled:
            raise ConfigError("DASHSCOPE is partly configured; missing: DASHSCOPE_API_KEY")


class EmbeddingSettings(_Section):
    """An OpenAI-compatible embeddings endpoint (used by the knowledge base)."""

    model_config = _env_config("EMBEDDING_")
    REQUIRED = ("base_url", "model")
    PREFIX = "EMBEDDING_"

    base_url: str = ""
    model: str = ""


class WeComSettings(_Section):
    """A WeCom (企业微信) self-built application."""

    model_config = _env_config("WECOM_")
    REQUIRED = ("corp_id", "agent_id", "secret", "token", "aes_key")
    # WECOM_CORP_ID alone does not switch the app on: 微信客服 shares it.
    TRIGGERS = ("agent_id", "secret", "token", "aes_key")
    PREFIX = "WECOM_"

    corp_id: str = ""
    agent_id: str = ""
    secret: SecretStr = SecretStr("")
    token: SecretStr = SecretStr("")
    aes_key: SecretStr = SecretStr("")
    api_base: str = "https://qyapi.weixin.qq.com"

    @field_validator("aes_key")
    @classmethod
    def _aes_key_shape(cls, value: SecretStr) -> SecretStr:
        # Never echo the value: say what is wrong with it.
        return _check_aes_key(value, "WECOM_AES_KEY")

    @field_validator("agent_id")
    @classmethod
    def _agent_id_numeric(cls, value: str) -> str:
        if value and not value.isdigit():
            raise ValueError("WECOM_AGENT_ID must be the numeric AgentId")
        return value


class WeComKfSettings(_Section):
    """WeCom customer service (微信客服); the corp id is shared with the WeCom app."""

    model_config = _env_config("WECOM_KF_")
    REQUIRED = ("secret", "token", "aes_key")
    PREFIX = "WECOM_KF_"

    corp_id: str = Field(default="", validation_alias="WECOM_CORP_ID")
    secret: SecretStr = SecretStr("")
    token: SecretStr = SecretStr("")
    aes_key: SecretStr = SecretStr("")
    api_base: str = Field(default="https://qyapi.weixin.qq.com", validation_alias="WECOM_API_BASE")

    @field_validator("aes_key")
    @classmethod
    def _aes_key_shape(cls, value: SecretStr) -> SecretStr:
        return _check_aes_key(value, "WECOM_KF_AES_KEY")

    def check(self) -> None:
        super().check()
        if self.enabled and not self.corp_id:
            raise ConfigError("WECOM_KF is partly configured; missing: WECOM_CORP_ID")


class DingTalkSettings(_Section):
    """A DingTalk (钉钉) app with its robot; TOKEN + AES_KEY add encrypted event subscription."""

    model_config = _env_config("DINGTALK_")
    REQUIRED = ("app_key", "app_secret")
    PREFIX = "DINGTALK_"

    app_key: str = ""
    app_secret: SecretStr = SecretStr("")
    robot_code: str = ""  # empty: the app key, as for internal-app robots
    token: SecretStr = SecretStr("")
    aes_key: SecretStr = SecretStr("")
    api_base: str = "https://api.dingtalk.com"
    oapi_base: str = "https://oapi.dingtalk.com"
    # DINGTALK_STREAM=true: receive through Stream mode (`bot stream dingtalk`, README §4.3).
    stream: bool = False

    @field_validator("aes_key")
    @classmethod
    def _aes_key_shape(cls, value: SecretStr) -> SecretStr:
        return _check_aes_key(value, "DINGTALK_AES_KEY")

    def check(self) -> None:
        super().check()
        has_token = bool(self.token.get_secret_value())
        has_key = bool(self.aes_key.get_secret_value())
        if has_token != has_key:
            missing = "DINGTALK_AES_KEY" if has_token else "DINGTALK_TOKEN"
            raise ConfigError(
                f"DINGTALK event subscription is partly configured; missing: {missing}"
            )
        if has_token and not self.enabled:
            raise ConfigError(
                "DINGTALK is partly configured; missing: DINGTALK_APP_KEY, DINGTALK_APP_SECRET"
            )


class FeishuSettings(_Section):
    """A Feishu / Lark (飞书) app; an Encrypt Key turns on signatures and encryption."""

    model_config = _env_config("FEISHU_")
    REQUIRED = ("app_id", "app_secret", "verification_token")
    PREFIX = "FEISHU_"

    app_id: str = ""
    app_secret: SecretStr = SecretStr("")
    verification_token: SecretStr = SecretStr("")
    encrypt_key: SecretStr = SecretStr("")  # optional
    api_base: str = "https://open.feishu.cn"  # Lark: https://open.larksuite.com
    # Optional: the bot's own open_id, to tell "@bot" from other mentions in groups.
    bot_open_id: str = ""


class WeChatMPSettings(_Section):
    """A WeChat Official Account (公众号); an empty AES key means plaintext mode."""

    model_config = _env_config("WECHAT_MP_")
    REQUIRED = ("app_id", "app_secret", "token")
    PREFIX = "WECHAT_MP_"

    app_id: str = ""
    app_secret: SecretStr = SecretStr("")
    token: SecretStr = SecretStr("")
    aes_key: SecretStr = SecretStr("")  # optional: compatible and safe modes
    api_base: str = Field(default="https://api.weixin.qq.com", validation_alias="WECHAT_API_BASE")

    @field_validator("aes_key")
    @classmethod
    def _aes_key_shape(cls, value: SecretStr) -> SecretStr:
        return _check_aes_key(value, "WECHAT_MP_AES_KEY")


_SECTIONS: dict[str, type[_Section]] = {
    "vllm": VLLMSettings,
    "dashscope": DashScopeSettings,
    "embedding": EmbeddingSettings,
    "wecom": WeComSettings,
    "wecom_kf": WeComKfSettings,
    "dingtalk": DingTalkSettings,
    "feishu": FeishuSettings,
    "wechat_mp": WeChatMPSettings,
}


class Settings:
    """All configuration, composed of one model per concern; build it explicitly."""

    def __init__(
        self,
        core: CoreSettings,
        vllm: VLLMSettings,
        dashscope: DashScopeSettings,
        embedding: EmbeddingSettings,
        wecom: WeComSettings,
        wecom_kf: WeComKfSettings,
        dingtalk: DingTalkSettings,
        feishu: FeishuSettings,
        wechat_mp: WeChatMPSettings,
    ) -> None:
        self.core = core
        self.vllm = vllm
        self.dashscope = dashscope
        self.embedding = embedding
        self.wecom = wecom
        self.wecom_kf = wecom_kf
        self.dingtalk = dingtalk
        self.feishu = feishu
        self.wechat_mp = wechat_mp
        for section in (vllm, dashscope, embedding, wecom, wecom_kf, dingtalk, feishu, wechat_mp):
            section.check()

    @classmethod
    def load(cls, env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
        """Read the environment (and `env_file`); keyword dicts override per section.

        Example: ``Settings.load(None, core={"redis_url": "redis://..."})``.
        """
        try:
            core = CoreSettings(_env_file=env_file, **overrides.pop("core", {}))  # type: ignore[call-arg]
            sections = {
                name: model(_env_file=env_file, **overrides.pop(name, {}))  # type: ignore[call-arg]
                for name, model in _SECTIONS.items()
            }
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None
        if overrides:
            raise ConfigError(f"unknown settings sections: {', '.join(sorted(overrides))}")
        return cls(core=core, **sections)  # type: ignore[arg-type]


def _describe(exc: ValidationError) -> str:
    # pydantic's own message includes the input value: rebuild one without it.
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        lines.append(f"{where}: {err['msg']}")
    return "invalid configuration: " + "; ".join(lines)
