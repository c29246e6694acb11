"""adapters.feishu.ws."""
