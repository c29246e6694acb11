"""WeChat Official Account (微信公众号)."""

from adapters.wechat_mp.adapter import WeChatMPAdapter

__all__ = ["WeChatMPAdapter"]
