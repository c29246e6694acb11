"""adapters.wechat_mp."""
