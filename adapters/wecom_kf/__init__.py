"""adapters.wecom_kf."""
