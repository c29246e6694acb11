"""WeCom (企业微信) self-built application."""

from adapters.wecom.adapter import WeComAdapter

__all__ = ["WeComAdapter"]
