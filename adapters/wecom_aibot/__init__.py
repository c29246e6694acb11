"""WeCom 智能机器人 (the AI bot), API mode with a callback URL: JSON callbacks, stream replies."""

from adapters.wecom_aibot.adapter import WeComAiBotAdapter

__all__ = ["WeComAiBotAdapter"]
