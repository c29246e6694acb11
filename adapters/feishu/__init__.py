"""adapters.feishu."""
