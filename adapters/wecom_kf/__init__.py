"""WeCom customer service (微信客服)."""

from adapters.wecom_kf.adapter import WeComKfAdapter

__all__ = ["WeComKfAdapter"]
