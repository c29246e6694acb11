"""Which address do the platforms see this host call from, and may it call?

WeCom apps created since 2022 take API calls only from the app's trusted IPs (企业可信IP):
the token fetch still works, every other call answers 60020 with the address WeCom saw in
its errmsg ("… from ip: 203.0.113.7, more info at …"). `agent/get` (the app's own profile)
is such a call and changes nothing, so it tells whether this host may call at all, and
which IP to add when not.

`DOCTOR_ECHO_IP_URL` optionally names an endpoint that answers the caller's address (plain
text, or JSON with `ip`/`origin`): its answer is shown as information, the address to add
before the first refusal.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json

import aiohttp

from adapters import errcodes
from adapters.client import platform_says
from adapters.http import errcode_of
from adapters.wecom.client import WeComClient
from bot.doctor.platforms import app_name
from bot.doctor.result import Result, fail, from_errcode, ok, skip, warn
from bot.errors import BotError
from bot.settings import Settings
from bot.settings.platforms import WeComSettings
from bot.wiring import adapter_for

EGRESS_TIMEOUT_S = 8.0
NOT_TRUSTED = 60020


async def check_wecom_trusted_ip(settings: Settings, app: str, section: WeComSettings) -> Result:
    """`agent/get` with a fresh token: 60020 means this host's IP is not a trusted IP."""
    name = f"{app_name('wecom', app)} trusted IP"
    client = adapter_for(section, app=app, settings=settings, tokens=None, redis=None)
    if not isinstance(client, WeComClient):
        return skip(name, "no WeCom client")
    try:
        # One deadline for the token and the call, so the doctor's run stays short.
        async with asyncio.timeout(EGRESS_TIMEOUT_S), aiohttp.ClientSession() as http:
            token = await client.access_token(http)
            params = {"access_token": token, "agentid": section.agent_id}
            data = await client.request_json(http, "GET", "/cgi-bin/agent/get", params=params)
    except (BotError, TimeoutError):
        return skip(name, "no answer with a token (see the token check)")
    code = errcode_of(data)
    if code == 0:
        return ok(name, f"this host may call the API (agent/get: {data.get('name') or 'ok'})")
    said = str(data.get("errmsg") or "")
    if code == NOT_TRUSTED:
        ip = errcodes.seen_ip(said)
        seen = ip or "an address the errmsg does not name"
        return fail(
            name,
            f"errcode 60020: the token works, but WeCom refuses calls from {seen}",
            f"在企业微信管理后台「应用管理 → 该应用 → 企业可信IP」加入 "
            f"{ip or '服务器的公网出口 IP'}（须先设置可信域名或接收消息服务器 URL）；"
            "出口 IP 会变时用固定出口（NAT 网关或代理）",
            f"add {ip or 'the public egress IP'} under 应用管理 → the app → 企业可信IP in the "
            "WeCom admin console (a trusted domain or callback URL must be set first); if the "
            "egress IP changes, send through a fixed one (a NAT gateway or proxy)",
        )
    entry = errcodes.explain("wecom", code)
    if entry is not None:
        return from_errcode(name, f"agent/get: errcode {code}", entry)
    return fail(
        name,
        f"agent/get: errcode {code}{platform_says(data)}",
        "按 errcode 查 docs/troubleshooting.md 或企业微信错误码页",
        "look the errcode up in docs/troubleshooting.md or WeCom's error code page",
    )


def address_in(text: str) -> str:
    """The address an echo endpoint answers: plain text, or JSON with `ip` or `origin`."""
    text = text.strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = text
    if isinstance(data, dict):
        data = data.get("ip") or data.get("origin") or ""
    candidate = str(data).split(",")[0].strip()  # httpbin's origin may list proxies too
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return ""


async def check_echo_ip(settings: Settings) -> Result:
    """The egress address as `DOCTOR_ECHO_IP_URL` sees this host (information only)."""
    name = "egress IP"
    url = settings.core.doctor_echo_ip_url.strip()
    if not url:
        return skip(name, "DOCTOR_ECHO_IP_URL not set")
    try:
        timeout = aiohttp.ClientTimeout(total=EGRESS_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
            status = resp.status
            text = (await resp.content.read(1024)).decode("utf-8", "replace")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return warn(
            name,
            f"{url} did not answer ({type(exc).__name__})",
            "检查 DOCTOR_ECHO_IP_URL 是否可从本机访问",
            "check that DOCTOR_ECHO_IP_URL is reachable from this host",
        )
    ip = address_in(text) if status == 200 else ""
    if not ip:
        return warn(
            name,
            f"{url} answered HTTP {status} without an IP address",
            "DOCTOR_ECHO_IP_URL 应返回调用方 IP（纯文本，或含 ip / origin 的 JSON）",
            "DOCTOR_ECHO_IP_URL must answer the caller's IP (plain text, or JSON with ip or "
            "origin)",
        )
    return ok(name, f"{ip}, as {url} sees this host: the address for trusted-IP lists")
