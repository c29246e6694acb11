"""adapters.dingtalk."""
