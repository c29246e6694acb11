"""Words of the channels and configuration page."""

from __future__ import annotations

ZH: dict[str, str] = {
    "nav.channels": "渠道与配置",
    "ch.webhook": "回调地址（填到平台后台）",
    "ch.last_in": "最近收到消息",
    "ch.last_error": "最近发送失败",
    "ch.never": "还没有",
    "ch.stream": "长连接模式（无需回调地址）",
    "ch.none": "还没有配置任何平台。在 .env 或 bot.toml 中配置后重启。",
    "ch.no_public_url": "未设置 BOT_PUBLIC_URL：下面的地址按当前访问地址生成，请确认平台能访问它。",
    "ch.config": "生效的配置",
    "ch.config_hint": "只读。密钥类配置只显示是否已设置；修改请编辑 .env 或 bot.toml 后重启。",
    "ch.secret_set": "已设置（隐藏）",
    "ch.secret_unset": "未设置",
}

EN: dict[str, str] = {
    "nav.channels": "Channels & settings",
    "ch.webhook": "Webhook URL (paste into the platform)",
    "ch.last_in": "Last customer message",
    "ch.last_error": "Last failed send",
    "ch.never": "none yet",
    "ch.stream": "long connection (no webhook URL needed)",
    "ch.none": "No platform is configured. Configure one in .env or bot.toml and restart.",
    "ch.no_public_url": (
        "BOT_PUBLIC_URL is not set: the URLs below use the address you opened the console "
        "with; make sure the platform can reach it."
    ),
    "ch.config": "Effective configuration",
    "ch.config_hint": (
        "Read-only. Secrets show only whether they are set; change settings in .env or "
        "bot.toml and restart."
    ),
    "ch.secret_set": "set (hidden)",
    "ch.secret_unset": "not set",
}
