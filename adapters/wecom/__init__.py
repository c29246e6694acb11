"""adapters.wecom."""
