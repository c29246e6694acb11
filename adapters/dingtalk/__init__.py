"""DingTalk (钉钉) robot: HTTP mode, Stream mode, events and media."""

from adapters.dingtalk.adapter import DingTalkAdapter

__all__ = ["DingTalkAdapter"]
