"""Configuration from the environment, `.env` and `bot.toml`; names as in docs/configuration.md.

One pydantic-settings model per concern (`core`, `models`, `platforms`, `features`),
composed by `Settings` (`loader`); `apps` adds the named apps of bot.toml.
"""

from bot.settings.asr import AsrSettings
from bot.settings.core import CoreSettings
from bot.settings.features import AgentSettings, ConsoleSettings, HandoffSettings, OrdersSettings
from bot.settings.loader import Settings
from bot.settings.models import DashScopeSettings, EmbeddingSettings, RerankSettings, VLLMSettings
from bot.settings.platforms import (
    DingTalkSettings,
    FeishuSettings,
    WeChatMPSettings,
    WeComAiBotSettings,
    WeComKfSettings,
    WeComSettings,
)

__all__ = [
    "AgentSettings",
    "AsrSettings",
    "ConsoleSettings",
    "CoreSettings",
    "DashScopeSettings",
    "DingTalkSettings",
    "EmbeddingSettings",
    "FeishuSettings",
    "HandoffSettings",
    "OrdersSettings",
    "RerankSettings",
    "Settings",
    "VLLMSettings",
    "WeChatMPSettings",
    "WeComAiBotSettings",
    "WeComKfSettings",
    "WeComSettings",
]
