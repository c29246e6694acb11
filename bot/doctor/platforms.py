"""Each configured platform app: its token fetch, its callback Token and EncodingAESKey, and
the public URL the platforms call back."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aiohttp

from adapters import errcodes
from adapters.client import ApiClient
from adapters.wechat.crypto import decode_aes_key
from bot.doctor.result import Result, fail, from_errcode, ok, skip, warn
from bot.domain import DEFAULT_APP
from bot.errors import BotError
from bot.settings import Settings
from bot.settings import apps as appconfig
from bot.settings.base import Section
from bot.wiring import adapter_for

TOKEN_TIMEOUT_S = 8.0
# Platforms whose callbacks are WXBizMsgCrypt (signature with Token, body with the AES key).
_CALLBACK = ("wecom", "wecom_kf", "wecom_aibot", "wechat_mp", "dingtalk")


def app_name(platform: str, app: str) -> str:
    return platform if app == DEFAULT_APP else f"{platform}/{app}"


async def check_token(settings: Settings, platform: str, app: str, section: Section) -> Result:
    """One uncached token request with the app's id and secret, as the console's button."""
    name = f"{app_name(platform, app)} token"
    client = adapter_for(section, app=app, settings=settings, tokens=None, redis=None)
    if not isinstance(client, ApiClient):
        return skip(name, "no access token on this platform")
    try:
        async with aiohttp.ClientSession() as http:
            _, expires_in_s = await asyncio.wait_for(
                client.fetch_token(http, force=False), TOKEN_TIMEOUT_S
            )
    except TimeoutError:
        return _unreachable(name, f"{client.api_base} did not answer in {TOKEN_TIMEOUT_S:g} s")
    except BotError as exc:
        code = getattr(exc, "errcode", None)
        entry = errcodes.explain(platform, code)
        if entry is not None:
            # An IP refusal names the address the platform saw: the one to allow.
            ip = errcodes.seen_ip(str(exc))
            return from_errcode(name, f"errcode {code}" + (f", from ip {ip}" if ip else ""), entry)
        if code is None and getattr(exc, "status", None) is None:
            return _unreachable(name, str(exc))
        if code is None:
            # An HTTP error without the platform's errcode: not the platform's API answering.
            return fail(
                name,
                str(exc),
                f"核对 {_api_base_name(section)} 与出口代理：该地址不是平台 API",
                f"check {_api_base_name(section)} and any egress proxy: that address is not "
                "the platform's API",
            )
        return fail(
            name,
            str(exc),
            f"核对 {section.prefix}* 的 ID 与 Secret（见 docs/troubleshooting.md）",
            f"check the id and secret of {section.prefix}* (see docs/troubleshooting.md)",
        )
    return ok(name, f"fetched, valid {expires_in_s:.0f} s")


def _api_base_name(section: Section) -> str:
    # 微信客服 shares WECOM_API_BASE, the Official Account reads WECHAT_API_BASE.
    field = type(section).model_fields.get("api_base")
    alias = field.validation_alias if field is not None else None
    return alias if isinstance(alias, str) else f"{section.prefix}API_BASE"


def _unreachable(name: str, detail: str) -> Result:
    return fail(
        name,
        detail,
        "检查本机能否访问平台 API（DNS、防火墙、出口代理）以及 *_API_BASE 设置",
        "check this host reaches the platform's API (DNS, firewall, egress proxy) and the "
        "*_API_BASE setting",
    )


def check_callback(platform: str, app: str, section: Section) -> Result | None:
    """The callback Token is set and the EncodingAESKey decodes as the platform's does."""
    if platform not in _CALLBACK:
        return None
    name = f"{app_name(platform, app)} callback key"
    token = field_text(section, "token")
    aes_key = field_text(section, "aes_key")
    if platform in ("wechat_mp", "dingtalk") and not aes_key:
        # Official Account plaintext mode; DingTalk without event subscription.
        return skip(name, "no EncodingAESKey (plaintext mode / no event subscription)")
    if platform == "wecom_aibot" and getattr(section, "mode", "") == "longconn":
        return skip(name, "long-connection mode: no callback URL (bot stream wecom_aibot)")
    if not token:
        return from_errcode(name, f"{section.prefix}TOKEN is empty", _callback_code(-40001))
    try:
        decode_aes_key(aes_key)
    except BotError as exc:
        return from_errcode(name, f"{section.prefix}AES_KEY: {exc}", _callback_code(-40004))
    return ok(name, "Token set, EncodingAESKey 43 characters → 32-byte key")


def _callback_code(code: int) -> errcodes.Errcode:
    entry = errcodes.callback(code)
    if entry is None:
        raise KeyError(code)  # a code of the table: a bug if gone
    return entry


def field_text(section: Section, field: str) -> str:
    """A section's field as plain text (a secret's value unwrapped)."""
    value = getattr(section, field, "")
    return str(value.get_secret_value() if hasattr(value, "get_secret_value") else value or "")


def check_public_url(settings: Settings) -> Result:
    name = "BOT_PUBLIC_URL"
    if not appconfig.configured(settings):
        return skip(name, "no platform app configured")
    url = settings.handoff.public_url.strip()
    if not url:
        return warn(
            name,
            "not set",
            "设为平台回调用的公网 https 地址（如 https://bot.example.com），用于回调链接与转人工链接",
            "set it to the public https address the platforms call (https://bot.example.com); "
            "links in handoff notices use it",
        )
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        return warn(
            name,
            f"{url} is not https",
            "平台回调与链接需 https：在反向代理上配置证书，并把 BOT_PUBLIC_URL 写成 https://…",
            "platform callbacks and links need https: terminate TLS at a reverse proxy and "
            "write BOT_PUBLIC_URL as https://…",
        )
    return ok(name, url)
