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
    "ch.token": "访问令牌",
    "ch.check_token": "检查 token",
    "ch.check_token_for": "检查 token：{name}",
    "ch.token_ok": "可用（有效期 {text} 秒）",
    "ch.token_bad": "失败：{text}",
    "ch.token_ok_notice": "{name}：平台发放了 access token（有效期 {text} 秒），凭据可用。",
    "ch.token_bad_notice": "{name}：获取 access token 失败：{text}",
    "ch.no_app": "没有配置这个平台应用。",
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
    "ch.token": "Access token",
    "ch.check_token": "Check token",
    "ch.check_token_for": "Check token: {name}",
    "ch.token_ok": "works (valid {text} s)",
    "ch.token_bad": "failed: {text}",
    "ch.token_ok_notice": (
        "{name}: the platform issued an access token (valid {text} s); the credentials work."
    ),
    "ch.token_bad_notice": "{name}: getting an access token failed: {text}",
    "ch.no_app": "No such platform app is configured.",
}
