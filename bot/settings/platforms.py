"""One section per chat platform app (WECOM_*, WECOM_KF_*, WECOM_AIBOT_*, DINGTALK_*, FEISHU_*,
WECHAT_MP_*)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from bot.errors import ConfigError
from bot.settings.base import Section, check_aes_key, env_config


class WeComSettings(Section):
    """A WeCom (企业微信) self-built application."""

    model_config = env_config("WECOM_")
    REQUIRED = ("corp_id", "agent_id", "secret", "token", "aes_key")
    # WECOM_CORP_ID alone does not switch the app on: 微信客服 shares it.
    TRIGGERS = ("agent_id", "secret", "token", "aes_key")

    corp_id: str = ""
    agent_id: str = ""
    secret: SecretStr = SecretStr("")
    token: SecretStr = SecretStr("")
    aes_key: SecretStr = SecretStr("")
    api_base: str = "https://qyapi.weixin.qq.com"
    # Pictures members send are fetched (media/get) into BOT_DATA_DIR/media; 0: not fetched.
    media_max_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    media_timeout_s: float = Field(default=20.0, gt=0, le=300)

    @field_validator("aes_key")
    @classmethod
    def _aes_key_shape(cls, value: SecretStr) -> SecretStr:
        # Never echo the value: say what is wrong with it.
        return check_aes_key(value, "WECOM_AES_KEY")

    @field_validator("agent_id")
    @classmethod
    def _agent_id_numeric(cls, value: str) -> str:
        if value and not value.isdigit():
            raise ValueError("WECOM_AGENT_ID must be the numeric AgentId")
        return value


class WeComKfSettings(Section):
    """WeCom customer service (微信客服); the corp id is shared with the WeCom app."""

    model_config = env_config("WECOM_KF_")
    REQUIRED = ("secret", "token", "aes_key")

    corp_id: str = Field(default="", validation_alias="WECOM_CORP_ID")
    secret: SecretStr = SecretStr("")
    token: SecretStr = SecretStr("")
    aes_key: SecretStr = SecretStr("")
    api_base: str = Field(default="https://qyapi.weixin.qq.com", validation_alias="WECOM_API_BASE")
    # Pictures customers send are fetched (media/get) into BOT_DATA_DIR/media; 0: not fetched.
    media_max_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    media_timeout_s: float = Field(default=20.0, gt=0, le=300)

    @field_validator("aes_key")
    @classmethod
    def _aes_key_shape(cls, value: SecretStr) -> SecretStr:
        return check_aes_key(value, "WECOM_KF_AES_KEY")

    def check(self) -> None:
        super().check()
        if self.enabled and not self.corp_id:
            raise ConfigError("WECOM_KF is partly configured; missing: WECOM_CORP_ID")


LONGCONN_REQUIRED = ("bot_id", "secret")


class WeComAiBotSettings(Section):
    """A WeCom 智能机器人 (AI bot): a callback URL (webhook mode) or a long connection."""

    model_config = env_config("WECOM_AIBOT_")
    REQUIRED = ("token", "aes_key")
    TRIGGERS = ("token", "aes_key", "secret")

    # "webhook": callbacks to /webhooks/wecom_aibot (TOKEN + AES_KEY); "longconn": the
    # websocket held by `bot stream wecom_aibot` (BOT_ID + SECRET), no public URL.
    mode: str = Field(default="webhook", pattern="^(webhook|longconn)$")
    # Long connection: the secret of the bot's long-connection settings.
    secret: SecretStr = SecretStr("")
    ws_url: str = "wss://openws.work.weixin.qq.com"

    token: SecretStr = SecretStr("")
    aes_key: SecretStr = SecretStr("")
    # Optional: the bot's id (aibotid); set, callbacks naming another bot are refused.
    bot_id: str = ""
    # The passive reply to `enter_chat` (a member opens the bot's chat, first time that day);
    # empty: no welcome.
    welcome_text: str = "您好，我是智能客服，请问有什么可以帮您？"
    # Each POST to a message's response_url (answers past the 6-minute stream window).
    response_timeout_s: float = Field(default=10.0, gt=0, le=60)
    # Pictures and files members send (webhook mode): fetched from their encrypted URL,
    # decrypted with AES_KEY, into BOT_DATA_DIR/media; 0: not fetched.
    media_max_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    media_timeout_s: float = Field(default=20.0, gt=0, le=300)
    # The hosts those URLs may be on (https, the host or a subdomain); an entry with a
    # scheme (http://127.0.0.1:8080) allows exactly that origin.
    media_hosts: str = "myqcloud.com,qpic.cn,weixin.qq.com"

    @field_validator("aes_key")
    @classmethod
    def _aes_key_shape(cls, value: SecretStr) -> SecretStr:
        return check_aes_key(value, "WECOM_AIBOT_AES_KEY")

    def needs(self) -> tuple[str, ...]:
        """A long connection needs the bot id and secret, no callback Token or key."""
        return LONGCONN_REQUIRED if self.mode == "longconn" else self.REQUIRED

    def check(self) -> None:
        if self.mode != "longconn":
            super().check()
            return
        missing = [self.prefix + n.upper() for n in LONGCONN_REQUIRED if not self._value(n)]
        if missing:
            raise ConfigError(f"WECOM_AIBOT_MODE=longconn needs {', '.join(missing)}")


class DingTalkSettings(Section):
    """A DingTalk (钉钉) app with its robot; TOKEN + AES_KEY add encrypted event subscription."""

    model_config = env_config("DINGTALK_")
    REQUIRED = ("app_key", "app_secret")

    app_key: str = ""
    app_secret: SecretStr = SecretStr("")
    robot_code: str = ""  # empty: the app key, as for internal-app robots
    token: SecretStr = SecretStr("")
    aes_key: SecretStr = SecretStr("")
    api_base: str = "https://api.dingtalk.com"
    oapi_base: str = "https://oapi.dingtalk.com"
    # DINGTALK_STREAM=true: receive through Stream mode (`bot stream dingtalk`,
    # docs/protocols/dingtalk.md#stream-mode).
    stream: bool = False
    # Sent (at most once a day per group) when the event subscription reports chat_add_member
    # for a group; empty: no welcome.
    group_welcome_text: str = ""
    # DINGTALK_CARD_TEMPLATE_ID: answers type themselves in an AI card made from this template
    # (needs the card permissions; refused, markdown replies as before). Empty: markdown.
    card_template_id: str = ""
    # The template's variable the answer streams into.
    card_content_key: str = "content"
    # Card updates per second while an answer streams.
    card_updates_per_s: float = Field(default=3.0, gt=0, le=10)
    # Pictures/files/videos sent to the robot are fetched into BOT_DATA_DIR/media; 0: not fetched.
    media_max_bytes: int = Field(default=20 * 1024 * 1024, ge=0)
    media_timeout_s: float = Field(default=30.0, gt=0, le=300)

    @field_validator("aes_key")
    @classmethod
    def _aes_key_shape(cls, value: SecretStr) -> SecretStr:
        return check_aes_key(value, "DINGTALK_AES_KEY")

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


class FeishuSettings(Section):
    """A Feishu / Lark (飞书) app; an Encrypt Key turns on signatures and encryption."""

    model_config = env_config("FEISHU_")
    REQUIRED = ("app_id", "app_secret", "verification_token")

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
    # FEISHU_STREAMING_CARDS=true: answers type themselves in a CardKit streaming card
    # (needs the cardkit:card:write scope; without it, plain replies as before).
    streaming_cards: bool = False
    # Card updates per second while an answer streams (Feishu allows at most 10 per card).
    card_updates_per_s: float = Field(default=3.0, gt=0, le=10)
    # Pictures users send are fetched (message resources) into BOT_DATA_DIR/media; 0: not.
    media_max_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    media_timeout_s: float = Field(default=20.0, gt=0, le=300)


class WeChatMPSettings(Section):
    """A WeChat Official Account (公众号); an empty AES key means plaintext mode."""

    model_config = env_config("WECHAT_MP_")
    REQUIRED = ("app_id", "app_secret", "token")

    app_id: str = ""
    app_secret: SecretStr = SecretStr("")
    token: SecretStr = SecretStr("")
    aes_key: SecretStr = SecretStr("")  # optional: compatible and safe modes
    api_base: str = Field(default="https://api.weixin.qq.com", validation_alias="WECHAT_API_BASE")
    # Sent on subscribe (关注) unless an auto-reply rule of type "subscribe" answers first.
    welcome_text: str = ""
    # Menu CLICK key -> fixed reply, as JSON ({"V1001_HOURS": "营业时间 9:00-18:00"}); a key
    # without a reply (here or in a "click" rule) is asked to the agent as a question.
    menu_replies: dict[str, str] = Field(default_factory=dict)
    # false: the account has no 客服消息 permission (unverified accounts; errcode 48001 also
    # teaches it): answers not ready in time are delivered passively on the next message.
    custom_api: bool = True
    # Pictures followers send are fetched (media/get) into BOT_DATA_DIR/media; 0: not fetched.
    media_max_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    media_timeout_s: float = Field(default=20.0, gt=0, le=300)

    @field_validator("aes_key")
    @classmethod
    def _aes_key_shape(cls, value: SecretStr) -> SecretStr:
        return check_aes_key(value, "WECHAT_MP_AES_KEY")


# Each platform's section, by platform id (bot.toml may add named apps to any of them).
SECTIONS: dict[str, type[Section]] = {
    "wecom": WeComSettings,
    "wecom_kf": WeComKfSettings,
    "wecom_aibot": WeComAiBotSettings,
    "dingtalk": DingTalkSettings,
    "feishu": FeishuSettings,
    "wechat_mp": WeChatMPSettings,
}
