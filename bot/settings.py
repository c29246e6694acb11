"""Configuration from the environment and `.env`, names exactly as in DESIGN.md.

Each platform has one pydantic-settings model whose prefix matches its environment names;
`Settings` composes them. A platform with none of its variables set is off; one with only
some of them set is a `ConfigError` naming what is missing (never the values).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError
from bot.orders.base import DEFAULT_ORDER_ID_PATTERN

if TYPE_CHECKING:
    from bot.appconfig import AppConfig

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
    # Signs web chat identities (bot/web_identity.py); empty: derived from BOT_ADMIN_TOKEN,
    # else generated once and kept in Redis so every web replica agrees.
    secret_key: SecretStr = Field(default=SecretStr(""), validation_alias="BOT_SECRET_KEY")
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
    # The knowledge bases the bot answers from, comma-separated.
    kb_names: str = Field(default="default", validation_alias="BOT_KB_NAMES")
    # A jieba user dictionary (`word [freq] [tag]` per line) of domain terms for retrieval.
    jieba_user_dict: Path | None = Field(default=None, validation_alias="BOT_JIEBA_USER_DICT")
    # Largest admin API upload (all files of one request together), in bytes.
    upload_max_bytes: int = Field(default=20 << 20, validation_alias="BOT_UPLOAD_MAX_BYTES")
    log_level: str = Field(default="INFO", validation_alias="BOT_LOG_LEVEL")
    # Keyword auto-reply rules kept in a file (JSON or TOML), besides the database ones
    # managed through /api/autoreply/rules; reloaded when the file changes (bot/autoreply.py).
    autoreply_file: Path | None = Field(default=None, validation_alias="BOT_AUTOREPLY_FILE")
    # Several apps per platform (bot/appconfig.py); unset: ./bot.toml when it exists.
    config_file: Path | None = Field(default=None, validation_alias="BOT_CONFIG_FILE")
    # Local trial mode: a built-in stand-in for the WeCom API (set by `bot up`).
    sandbox: bool = Field(default=False, validation_alias="BOT_SANDBOX")
    # Memory, sessions and limits (bot/memory.py, bot/coalesce.py, bot/ratelimit.py).
    memory_tokens: int = Field(default=1500, ge=100, validation_alias="BOT_MEMORY_TOKENS")
    session_idle_s: float = Field(default=1800.0, gt=0, validation_alias="BOT_SESSION_IDLE_S")
    summary_timeout_s: float = Field(default=10.0, gt=0, validation_alias="BOT_SUMMARY_TIMEOUT_S")
    burst_window_s: float = Field(default=1.5, ge=0, le=10, validation_alias="BOT_BURST_WINDOW_S")
    rate_per_minute: int = Field(default=20, ge=0, validation_alias="BOT_RATE_PER_MINUTE")
    rate_per_day: int = Field(default=300, ge=0, validation_alias="BOT_RATE_PER_DAY")

    def kb_name_list(self) -> list[str]:
        """BOT_KB_NAMES as a list (``default`` when empty)."""
        names = [n.strip() for n in self.kb_names.split(",") if n.strip()]
        return names or ["default"]

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
    """Embeddings for dense knowledge retrieval: an OpenAI-compatible endpoint, or DashScope.

    EMBEDDING_PROVIDER=dashscope uses DashScope's OpenAI-compatible mode with
    DASHSCOPE_API_KEY (base URL and model then default to DashScope's).
    """

    model_config = _env_config("EMBEDDING_")
    REQUIRED = ("base_url", "model")
    TRIGGERS = ("base_url", "model", "provider")
    PREFIX = "EMBEDDING_"

    provider: str = ""  # "" / "openai": any OpenAI-compatible /v1/embeddings; "dashscope"
    base_url: str = ""
    model: str = ""
    api_key: SecretStr = SecretStr("")
    dim: int = Field(default=0, ge=0)  # 0: whatever the model returns
    batch_size: int = Field(default=32, ge=1, le=2048)
    timeout_s: float = Field(default=30.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)  # per ingestion batch, on 429/5xx/timeouts
    # A query waits this long for its vector, then search goes on with keywords only.
    query_timeout_s: float = Field(default=2.0, gt=0)
    # Fusion of keyword and vector rankings: "rrf" (reciprocal rank) or "weighted".
    fusion: str = "weighted"
    # Weighted fusion: the keyword confidence's share (the dense one has the rest).
    fusion_weight: float = Field(default=0.5, ge=0, le=1)
    # Cosine at or below this is dense confidence 0 (unrelated texts' typical cosine).
    sim_floor: float = Field(default=0.3, ge=-1, lt=1)

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("", "openai", "dashscope"):
            raise ValueError("EMBEDDING_PROVIDER must be openai or dashscope")
        return value

    @field_validator("fusion")
    @classmethod
    def _known_fusion(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("rrf", "weighted"):
            raise ValueError("EMBEDDING_FUSION must be rrf or weighted")
        return value

    def check(self) -> None:
        if self.provider == "dashscope":
            return  # base URL and model have DashScope defaults; the key is DASHSCOPE_API_KEY
        super().check()


class RerankSettings(_Section):
    """An optional reranker of knowledge hits: OpenAI-style `/v1/rerank` or DashScope.

    RERANK_PROVIDER=dashscope uses gte-rerank with DASHSCOPE_API_KEY (URL and model have
    defaults).
    """

    model_config = _env_config("RERANK_")
    REQUIRED = ("base_url", "model")
    TRIGGERS = ("base_url", "model", "provider")
    PREFIX = "RERANK_"

    provider: str = ""  # "" / "openai" (vLLM, Jina, bge servers) or "dashscope"
    base_url: str = ""
    model: str = ""
    api_key: SecretStr = SecretStr("")
    # The reranker's whole budget per search; past it the fused order stands.
    timeout_s: float = Field(default=2.0, gt=0)
    candidates: int = Field(default=20, ge=2, le=100)  # fused hits sent to be reordered

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("", "openai", "dashscope"):
            raise ValueError("RERANK_PROVIDER must be openai or dashscope")
        return value

    def check(self) -> None:
        if self.provider == "dashscope":
            return
        super().check()


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
    # Sent (at most once a day per group) when the event subscription reports chat_add_member
    # for a group; empty: no welcome.
    group_welcome_text: str = ""
    # Pictures/files/videos sent to the robot are fetched into BOT_DATA_DIR/media; 0: not fetched.
    media_max_bytes: int = Field(default=20 * 1024 * 1024, ge=0)
    media_timeout_s: float = Field(default=30.0, gt=0, le=300)

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
    # Optional: the bot's own open_id, to tell "@bot" from other mentions in groups; unset,
    # it is fetched from bot/v3/info and cached in Redis.
    bot_open_id: str = ""
    # FEISHU_STREAM=true: receive through the long connection (`bot stream feishu`).
    stream: bool = False


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
    # Sent on subscribe (关注) unless an auto-reply rule of type "subscribe" answers first.
    welcome_text: str = ""
    # Menu CLICK key -> fixed reply, as JSON ({"V1001_HOURS": "营业时间 9:00-18:00"}); a key
    # without a reply (here or in a "click" rule) is asked to the agent as a question.
    menu_replies: dict[str, str] = {}
    # false: the account has no 客服消息 permission (unverified accounts; errcode 48001 also
    # teaches it): answers not ready in time are delivered passively on the next message.
    custom_api: bool = True

    @field_validator("aes_key")
    @classmethod
    def _aes_key_shape(cls, value: SecretStr) -> SecretStr:
        return _check_aes_key(value, "WECHAT_MP_AES_KEY")


class HandoffSettings(_Section):
    """Human handoff (bot/handoff.py): triggers, the agent-group notice, the idle release.

    Keyword lists are comma-separated (、，also work) and add to the built-in defaults.
    """

    model_config = _env_config("HANDOFF_")
    PREFIX = "HANDOFF_"

    active: bool = Field(default=True, validation_alias="HANDOFF_ENABLED")
    keywords: str = ""  # more phrases that ask for a person (besides 转人工, 人工客服, ...)
    anger_keywords: str = ""  # replaces the default anger list when set
    release_keywords: str = ""  # more phrases that end the human session (besides 结束人工)
    repeat_count: int = Field(default=3, ge=2)
    low_confidence: float = Field(default=0.2, ge=0, le=1)
    low_confidence_turns: int = Field(default=2, ge=1)
    notice_text: str = "已为您转接人工客服，请稍候，客服人员会尽快回复您。"
    release_text: str = "好的，已结束人工服务，智能客服继续为您服务。"
    # Told the customer when an agent releases the chat or it idles back to the bot
    # (the customer's own "结束人工" gets release_text instead); empty: say nothing.
    returned_text: str = "人工服务已结束，接下来由智能助手为您服务。"
    idle_release_s: float = Field(default=1800.0, gt=0)
    forward_every_s: float = Field(default=60.0, ge=0)  # new customer messages to the group
    notify_kind: str = ""  # wecom | dingtalk | feishu
    notify_url: str = ""
    notify_secret: SecretStr = SecretStr("")
    notify_timeout_s: float = Field(default=5.0, gt=0)
    link_ttl_s: float = Field(default=7 * 24 * 3600.0, gt=0)  # signed transcript links
    public_url: str = Field(default="", validation_alias="BOT_PUBLIC_URL")

    def check(self) -> None:
        kind = self.notify_kind.strip().lower()
        if kind and kind not in {"wecom", "dingtalk", "feishu"}:
            raise ConfigError("HANDOFF_NOTIFY_KIND must be wecom, dingtalk or feishu")
        if bool(kind) != bool(self.notify_url):
            missing = "HANDOFF_NOTIFY_URL" if kind else "HANDOFF_NOTIFY_KIND"
            raise ConfigError(f"HANDOFF notice is partly configured; missing: {missing}")


class AgentSettings(_Section):
    """The agent (bot/agent.py): persona, policy, the tool loop's limits and tools.

    AGENT_SYSTEM_PROMPT (or BOT_SYSTEM_PROMPT) replaces the whole prompt; otherwise it is
    AGENT_PERSONA plus AGENT_POLICY (each with a default). AGENT_TOOLS: comma-separated
    tool names to offer (empty: all; "none": no tools).
    """

    model_config = _env_config("AGENT_")
    PREFIX = "AGENT_"

    persona: str = ""
    policy: str = ""
    system_prompt: str = ""
    max_steps: int = Field(default=4, ge=1, le=10)
    tool_timeout_s: float = Field(default=10.0, gt=0)
    timeout_s: float = Field(default=60.0, gt=0)  # one turn, every model call and tool together
    tools: str = ""

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in re.split(r"[,，、\s]+", self.tools) if n.strip())


class OrdersSettings(_Section):
    """Where orders come from (bot/orders/): our SQL tables, or the merchant's HTTP API.

    ORDERS_BACKEND=http needs ORDERS_HTTP_BASE_URL; ORDERS_HTTP_AUTH_HEADER is one header
    as "Name: value"; ORDERS_HTTP_FIELD_MAP is JSON, our field -> their dotted path.
    """

    model_config = _env_config("ORDERS_")
    PREFIX = "ORDERS_"

    backend: str = "sql"
    http_base_url: str = ""
    http_auth_header: SecretStr = SecretStr("")
    http_order_path: str = "/orders/{order_id}"
    http_list_path: str = "/customers/{customer_id}/orders"
    http_shipment_path: str = "/orders/{order_id}/shipments"
    http_field_map: dict[str, str] = {}
    http_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Order numbers in customer messages (the no-model path); default: the demo's QH + 12 digits.
    id_pattern: str = DEFAULT_ORDER_ID_PATTERN
    proof_max_failures: int = Field(default=5, ge=1, le=100)  # per user per day
    # Demo orders loaded by `bot up` into empty order tables (shipments.csv beside it).
    sample_file: Path = Path("examples/orders.csv")

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("sql", "http"):
            raise ValueError("ORDERS_BACKEND must be sql or http")
        return value

    @field_validator("id_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"ORDERS_ID_PATTERN is not a valid expression: {exc}") from None
        return value

    @property
    def auth_header(self) -> tuple[str, str] | None:
        """ORDERS_HTTP_AUTH_HEADER as (name, value); None when unset."""
        raw = self.http_auth_header.get_secret_value().strip()
        if not raw:
            return None
        name, sep, value = raw.partition(":")
        return (name.strip(), value.strip()) if sep else ("", "")

    def check(self) -> None:
        http_set = [
            f"ORDERS_HTTP_{n.upper()}"
            for n in ("base_url", "auth_header")
            if self._value(f"http_{n}")
        ]
        if self.backend == "sql":
            if http_set:
                raise ConfigError(
                    f"ORDERS is partly configured: {', '.join(http_set)} set; "
                    "missing: ORDERS_BACKEND=http"
                )
            return
        if not self.http_base_url:
            raise ConfigError("ORDERS is partly configured; missing: ORDERS_HTTP_BASE_URL")
        if not self.http_base_url.startswith(("http://", "https://")):
            raise ConfigError("ORDERS_HTTP_BASE_URL must start with http:// or https://")
        header = self.auth_header
        if header is not None and not (header[0] and header[1]):
            raise ConfigError('ORDERS_HTTP_AUTH_HEADER must look like "Name: value"')
        for name, field in (
            ("ORDERS_HTTP_ORDER_PATH", self.http_order_path),
            ("ORDERS_HTTP_SHIPMENT_PATH", self.http_shipment_path),
        ):
            if "{order_id}" not in field:
                raise ConfigError(f"{name} must contain {{order_id}}")
        if "{customer_id}" not in self.http_list_path:
            raise ConfigError("ORDERS_HTTP_LIST_PATH must contain {customer_id}")
        from bot.orders.http import DEFAULT_FIELD_MAP  # the keys a field map may use

        unknown = sorted(set(self.http_field_map) - set(DEFAULT_FIELD_MAP))
        if unknown:
            raise ConfigError(
                f"ORDERS_HTTP_FIELD_MAP has unknown keys: {', '.join(unknown)} "
                f"(known: {', '.join(DEFAULT_FIELD_MAP)})"
            )


_SECTIONS: dict[str, type[_Section]] = {
    "vllm": VLLMSettings,
    "dashscope": DashScopeSettings,
    "embedding": EmbeddingSettings,
    "wecom": WeComSettings,
    "wecom_kf": WeComKfSettings,
    "dingtalk": DingTalkSettings,
    "feishu": FeishuSettings,
    "wechat_mp": WeChatMPSettings,
    "handoff": HandoffSettings,
    "agent": AgentSettings,
    "orders": OrdersSettings,
    "rerank": RerankSettings,
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
        handoff: HandoffSettings | None = None,
        agent: AgentSettings | None = None,
        orders: OrdersSettings | None = None,
        rerank: RerankSettings | None = None,
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
        if handoff is None:
            handoff = HandoffSettings(_env_file=None)  # type: ignore[call-arg]
        self.handoff = handoff
        self.handoff.check()
        if agent is None:
            agent = AgentSettings(_env_file=None)  # type: ignore[call-arg]
        self.agent = agent
        if orders is None:
            orders = OrdersSettings(_env_file=None)  # type: ignore[call-arg]
        self.orders = orders
        self.orders.check()
        self.rerank = rerank or RerankSettings(_env_file=None)  # type: ignore[call-arg]
        self.rerank.check()
        # Named apps of bot.toml, (platform, app) -> bot.appconfig.AppConfig; filled by load().
        self.apps: dict[tuple[str, str], AppConfig] = {}
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
        settings = cls(core=core, **sections)  # type: ignore[arg-type]
        from bot import appconfig  # it builds on the sections above

        appconfig.apply(settings, env_file)
        return settings


def _describe(exc: ValidationError) -> str:
    # pydantic's own message includes the input value: rebuild one without it.
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        lines.append(f"{where}: {err['msg']}")
    return "invalid configuration: " + "; ".join(lines)
