"""Feishu / Lark (飞书): webhook events and replies; ws/ holds the long connection."""

from adapters.feishu.adapter import FeishuAdapter

__all__ = ["FeishuAdapter"]
