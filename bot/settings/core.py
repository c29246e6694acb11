"""DATABASE_URL, REDIS_URL and the BOT_* settings of every process."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.settings import tokens


class CoreSettings(BaseSettings):
    """DATABASE_URL, REDIS_URL and the BOT_* process settings."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    database_url: str = Field(default="", validation_alias="DATABASE_URL")
    # PostgreSQL: connections a worker process opens at most for its turns' own rows
    # (bot/db/pg.py), beside its SQLAlchemy pool (up to 30) for everything else.
    turn_db_connections: int = Field(
        default=32, ge=1, le=500, validation_alias="BOT_TURN_DB_CONNECTIONS"
    )
    redis_url: str = Field(default="", validation_alias="REDIS_URL")
    admin_token: SecretStr = Field(default=SecretStr(""), validation_alias="BOT_ADMIN_TOKEN")
    # More admin API tokens, each limited to some scopes (bot/settings/tokens.py): JSON.
    admin_tokens: SecretStr = Field(default=SecretStr(""), validation_alias="BOT_ADMIN_TOKENS")
    # Signs web chat identities (bot/web/identity.py); empty: derived from BOT_ADMIN_TOKEN,
    # else generated once and kept in Redis so every web replica agrees.
    secret_key: SecretStr = Field(default=SecretStr(""), validation_alias="BOT_SECRET_KEY")
    # /metrics asks for "Authorization: Bearer <this>" when set; unset, it answers only
    # loopback and private-network addresses (the scraper next to the bot, not the internet).
    metrics_token: SecretStr = Field(default=SecretStr(""), validation_alias="BOT_METRICS_TOKEN")
    host: str = Field(default="0.0.0.0", validation_alias="BOT_HOST")  # noqa: S104 - server bind
    port: int = Field(default=8080, validation_alias="BOT_PORT")
    data_dir: Path = Field(default=Path("data"), validation_alias="BOT_DATA_DIR")
    # Pictures and files customers sent (BOT_DATA_DIR/media) are deleted this long after they
    # were fetched (bot/pipeline/media.py).
    media_keep_s: float = Field(default=7 * 86400, ge=60, validation_alias="BOT_MEDIA_KEEP_S")
    knowledge_dir: Path = Field(
        default=Path("examples/knowledge"), validation_alias="BOT_KNOWLEDGE_DIR"
    )
    # `bot doctor` asks this URL which IP this host calls from (plain text or JSON ip/origin),
    # to show the address platforms' trusted-IP lists need; empty: not asked.
    doctor_echo_ip_url: str = Field(default="", validation_alias="DOCTOR_ECHO_IP_URL")
    system_prompt: str = Field(default="", validation_alias="BOT_SYSTEM_PROMPT")
    history_turns: int = Field(default=10, validation_alias="BOT_HISTORY_TURNS")
    worker_concurrency: int = Field(default=64, validation_alias="BOT_WORKER_CONCURRENCY")
    # Decoders (ffmpeg, SILK, file parsers) one worker process runs at once; more wait their
    # turn up to BOT_DECODE_WAIT_S, then get the polite "try again later" (bot/pipeline/slots.py).
    # Each may take a core and hundreds of MB: about the cores the worker may use.
    decode_concurrency: int = Field(
        default=2, ge=1, le=64, validation_alias="BOT_DECODE_CONCURRENCY"
    )
    decode_wait_s: float = Field(default=30.0, gt=0, le=300, validation_alias="BOT_DECODE_WAIT_S")
    # Redis redelivers an unacknowledged message after this long: how soon the turns of a
    # killed worker are taken up again. Above a turn's deadline (AGENT_TIMEOUT_S) plus its
    # in-process retries (bot/pipeline/jobs.py); a turn that outlives it anyway is guarded by
    # the send markers, not answered twice.
    visibility_timeout_s: float = Field(
        default=60.0, ge=1, validation_alias="BOT_BROKER_VISIBILITY_TIMEOUT_S"
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
    # Keyword auto-reply rules kept in a file (JSON or TOML), besides the database ones managed
    # through /api/autoreply/rules; reloaded when the file changes (bot/pipeline/autoreply.py).
    autoreply_file: Path | None = Field(default=None, validation_alias="BOT_AUTOREPLY_FILE")
    # Several apps per platform (bot/settings/apps.py); unset: ./bot.toml when it exists.
    config_file: Path | None = Field(default=None, validation_alias="BOT_CONFIG_FILE")
    # Local trial mode: a built-in stand-in for the WeCom API (set by `bot up`).
    sandbox: bool = Field(default=False, validation_alias="BOT_SANDBOX")
    # Memory, sessions and limits (bot/agent/memory.py, bot/pipeline/coalesce.py,
    # bot/pipeline/ratelimit.py).
    memory_tokens: int = Field(default=1500, ge=100, validation_alias="BOT_MEMORY_TOKENS")
    session_idle_s: float = Field(default=1800.0, gt=0, validation_alias="BOT_SESSION_IDLE_S")
    summary_timeout_s: float = Field(default=10.0, gt=0, validation_alias="BOT_SUMMARY_TIMEOUT_S")
    burst_window_s: float = Field(default=1.5, ge=0, le=10, validation_alias="BOT_BURST_WINDOW_S")
    rate_per_minute: int = Field(default=20, ge=0, validation_alias="BOT_RATE_PER_MINUTE")
    rate_per_day: int = Field(default=300, ge=0, validation_alias="BOT_RATE_PER_DAY")
    # New web chat identities one client address may be given per hour (0: no limit). Each
    # identity has its own proof-of-ownership allowance, so unlimited identities would
    # multiply it.
    webchat_identities_per_hour: int = Field(
        default=30, ge=0, validation_alias="BOT_WEBCHAT_IDENTITIES_PER_HOUR"
    )

    _admin_tokens: tuple[tokens.AdminToken, ...] = PrivateAttr(default=())

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        # Said at startup, not as redis-py's ValueError from deep inside the first call.
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _parse_admin_tokens(self) -> CoreSettings:
        # Parsed once here, so a bad list stops startup and requests only compare.
        self._admin_tokens = tokens.all_tokens(
            self.admin_token.get_secret_value(), self.admin_tokens.get_secret_value()
        )
        return self

    def admin_credentials(self) -> tuple[tokens.AdminToken, ...]:
        """Every admin API token with its scopes (BOT_ADMIN_TOKEN first, all scopes)."""
        return self._admin_tokens

    def kb_name_list(self) -> list[str]:
        """BOT_KB_NAMES as a list (``default`` when empty)."""
        names = [n.strip() for n in self.kb_names.split(",") if n.strip()]
        return names or ["default"]

    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'bot.db').as_posix()}"
