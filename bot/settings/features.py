"""Handoff, agent and orders settings (HANDOFF_*, AGENT_*, ORDERS_*)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from bot.errors import ConfigError
from bot.orders.base import DEFAULT_ORDER_ID_PATTERN
from bot.settings.base import Section, env_config


class HandoffSettings(Section):
    """Human handoff (bot/handoff/flow.py): triggers, the agent-group notice, the idle release.

    Keyword lists are comma-separated (、，also work) and add to the built-in defaults.
    """

    model_config = env_config("HANDOFF_")

    active: bool = Field(default=True, validation_alias="HANDOFF_ENABLED")
    keywords: str = ""  # more phrases that ask for a person (besides 转人工, 人工客服, ...)
    anger_keywords: str = ""  # replaces the default anger list when set
    release_keywords: str = ""  # more phrases that end the human session (besides 结束人工)
    repeat_count: int = Field(default=3, ge=2)
    low_confidence: float = Field(default=0.2, ge=0, le=1)
    low_confidence_turns: int = Field(default=2, ge=1)
    # Told when handed over and waiting in the queue ({position}: their place in it), or,
    # when an online agent got the conversation at once (the console's presence), assigned_text.
    notice_text: str = "已为您转接人工客服，当前排队第 {position} 位，请稍候。"
    assigned_text: str = "已为您转接人工客服，客服人员马上为您服务，请稍候。"
    # A message while still in the queue is acknowledged, at most once per waiting_every_s
    # (a customer typing five lines gets one); empty: say nothing.
    waiting_text: str = "已收到，客服马上就来，您当前排队第 {position} 位。"
    waiting_every_s: float = Field(default=60.0, gt=0)
    wait_alert_s: float = Field(default=120.0, gt=0)  # the inbox highlights longer waits
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


class AgentSettings(Section):
    """The agent (bot/agent/agent.py): persona, policy, the tool loop's limits and tools.

    AGENT_SYSTEM_PROMPT (or BOT_SYSTEM_PROMPT) replaces the whole prompt; otherwise it is
    AGENT_PERSONA plus AGENT_POLICY (each with a default). AGENT_TOOLS: comma-separated
    tool names to offer (empty: all; "none": no tools).
    """

    model_config = env_config("AGENT_")

    persona: str = ""
    policy: str = ""
    system_prompt: str = ""
    max_steps: int = Field(default=4, ge=1, le=10)
    tool_timeout_s: float = Field(default=10.0, gt=0)
    # One turn, every model call and tool together: past it the customer gets the degraded
    # answer (FAQ, or "a person will follow up"). The router splits it between backends.
    timeout_s: float = Field(default=20.0, gt=0)
    tools: str = ""
    # Small talk answered without a model (bot/agent/smalltalk.py); empty: the built-in text.
    greeting_text: str = ""
    thanks_text: str = ""
    goodbye_text: str = ""
    identity_text: str = ""

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in re.split(r"[,，、\s]+", self.tools) if n.strip())


class OrdersSettings(Section):
    """Where orders come from (bot/orders/): our SQL tables, or the merchant's HTTP API.

    ORDERS_BACKEND=http needs ORDERS_HTTP_BASE_URL; ORDERS_HTTP_AUTH_HEADER is one header
    as "Name: value"; ORDERS_HTTP_FIELD_MAP is JSON, our field -> their dotted path.
    """

    model_config = env_config("ORDERS_")

    backend: str = "sql"
    http_base_url: str = ""
    http_auth_header: SecretStr = SecretStr("")
    http_order_path: str = "/orders/{order_id}"
    http_list_path: str = "/customers/{customer_id}/orders"
    http_shipment_path: str = "/orders/{order_id}/shipments"
    http_field_map: dict[str, str] = Field(default_factory=dict)
    http_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Order numbers in customer messages (the no-model path); default: the demo's QH + 12 digits.
    id_pattern: str = DEFAULT_ORDER_ID_PATTERN
    proof_max_failures: int = Field(default=5, ge=1, le=100)  # per user per day
    # Per order and per customer per day, from all users together: what stops a guesser who
    # rotates identities.
    proof_max_target_failures: int = Field(default=10, ge=1, le=1000)
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


class ConsoleSettings(Section):
    """The operator console (bot/console/): sessions, sign-in throttling, language."""

    model_config = env_config("CONSOLE_")

    # A session ends after this long without a request, and in any case after session_max_s.
    session_idle_s: float = Field(default=3600.0, ge=60)
    session_max_s: float = Field(default=12 * 3600.0, ge=300)
    # Failed sign-ins per username within lockout_s before it waits out the rest of the
    # window (an address may fail four times as often); 0 switches throttling off.
    login_failures: int = Field(default=5, ge=0)
    lockout_s: float = Field(default=900.0, ge=10)
    language: str = Field(default="zh-CN", pattern=r"^(zh-CN|en)$")
