"""adapters.wechat."""
