"""Does the public URL answer a platform's URL check the way the platform will send it?

Saving the callback URL in the WeCom, 微信客服, AI-bot or Official Account console makes the
platform send one signed GET with an `echostr`; the console says only "请求URL失败" when the
answer is not the echo. Here the same GET, sealed with this host's Token and EncodingAESKey,
goes to `BOT_PUBLIC_URL` + the app's webhook path:

- the echo comes back: ✓, the proxy, TLS and keys all line up;
- a refusal (401/403): the server behind that URL has other keys (another deployment, an
  old configuration): ✗;
- 404, another status or another body: the proxy does not forward `/webhooks/` to `bot serve`,
  or something else answers there: ✗;
- no answer at all: a warning, not a failure — many hosts cannot reach their own public
  address (NAT hairpinning, split DNS) although the platform can.
"""

from __future__ import annotations

import os
import secrets
import time

import aiohttp

from adapters.wechat import simulate as wechat_simulate
from adapters.wechat.crypto import decode_aes_key
from adapters.wechat_mp.simulate import verification_query
from bot.doctor.platforms import app_name, field_text
from bot.doctor.result import Result, fail, ok, skip, warn
from bot.domain import DEFAULT_APP
from bot.errors import BotError
from bot.settings import Settings
from bot.settings.base import Section

VERIFY_TIMEOUT_S = 6.0
# The platforms that check a callback URL with a signed GET and an echostr.
ECHO_PLATFORMS = ("wecom", "wecom_kf", "wecom_aibot", "wechat_mp")


def webhook_url(base: str, platform: str, app: str) -> str:
    path = f"/webhooks/{platform}" + ("" if app == DEFAULT_APP else f"/{app}")
    return base.rstrip("/") + path


def verification(platform: str, section: Section, echo: str) -> dict[str, str] | None:
    """The query the platform sends to check the URL (None: the keys cannot make one)."""
    token = field_text(section, "token")
    stamp = {"timestamp": str(int(time.time())), "nonce": secrets.token_hex(5)}
    if not token:
        return None
    if platform == "wechat_mp":  # always plaintext: the signature over Token, time, nonce
        return verification_query(token=token, echostr=echo, **stamp)
    aes_key = field_text(section, "aes_key")
    try:
        decode_aes_key(aes_key)
    except BotError:
        return None
    # The AI bot's receive id is empty; the others use the corp id.
    receive_id = "" if platform == "wecom_aibot" else str(getattr(section, "corp_id", ""))
    echostr, query = wechat_simulate.seal(
        echo.encode(),
        token=token,
        aes_key=aes_key,
        receive_id=receive_id,
        random_prefix=os.urandom(16),
        **stamp,
    )
    return {**query, "echostr": echostr}


async def check_public_verification(
    settings: Settings, platform: str, app: str, section: Section
) -> Result:
    """The platform's URL check (one of ECHO_PLATFORMS) against `BOT_PUBLIC_URL`."""
    name = f"{app_name(platform, app)} public URL"
    base = settings.handoff.public_url.strip()
    if not base:
        return skip(name, "BOT_PUBLIC_URL not set")
    echo = secrets.token_hex(8)
    query = verification(platform, section, echo)
    if query is None:
        return skip(name, "no usable Token / EncodingAESKey (see the callback key check)")
    url = webhook_url(base, platform, app)
    try:
        timeout = aiohttp.ClientTimeout(total=VERIFY_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(url, params=query, allow_redirects=False) as resp,
        ):
            status = resp.status
            body = (await resp.content.read(4096)).decode("utf-8", "replace").strip()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return warn(
            name,
            f"{url} did not answer from this host ({type(exc).__name__})",
            "本机访问不到该公网地址（可能是 NAT 回环或内外网 DNS 不同）；在平台后台保存回调 URL "
            "验证：失败则检查 DNS、证书、防火墙，以及反向代理是否把 /webhooks/ 转发到 bot serve",
            "this host cannot reach that address (NAT hairpinning or split DNS may be why); "
            "save the URL in the platform console to check: if it fails, check DNS, the TLS "
            "certificate, the firewall and that the proxy forwards /webhooks/ to bot serve",
        )
    if status == 200 and body == echo:
        return ok(name, f"{url} answers the URL check")
    if status in (401, 403):
        return fail(
            name,
            f"{url} refused the check signed with this host's keys (HTTP {status})",
            f"该地址背后的服务用的 Token/EncodingAESKey 与本机 {section.prefix}* 不同："
            "确认请求到达的是这套部署，并与平台后台填写的一致",
            f"the server behind that URL has another Token / EncodingAESKey than this host's "
            f"{section.prefix}*: make sure it reaches this deployment, with the keys the "
            "platform console shows",
        )
    return fail(
        name,
        f"{url} answered HTTP {status} without the echo",
        "反向代理没有把 /webhooks/ 转发到 bot serve，或该地址上是别的服务：检查代理配置与路径",
        "the proxy does not forward /webhooks/ to bot serve, or another service answers "
        "there: check the proxy's routes and the path",
    )
