"""Does the public URL answer a platform's URL check the way the platform will send it?

Saving the callback URL in the WeCom, 微信客服, AI-bot or Official Account console makes the
platform send one signed GET with an `echostr`; the console says only "请求URL失败" when the
answer is not the echo. Feishu POSTs a `url_verification` challenge with the Verification
Token (encrypted and signed when an Encrypt Key is set) and expects it echoed. DingTalk's
HTTP-mode robot POSTs each message signed with the app secret (sent here: a group message
that does not @-mention the robot, which the bot takes and answers no one); with an event
subscription (DINGTALK_TOKEN, DINGTALK_AES_KEY) also the encrypted `check_url` event its
console sends when the URL is saved, answered with an encrypted "success". Here the same
request, sealed with this host's keys, goes to `BOT_PUBLIC_URL` + the app's webhook path:

- the expected answer comes back: ✓, the proxy, TLS and keys all line up;
- a refusal (401/403): the server behind that URL has other keys (another deployment, an
  old configuration): ✗;
- 404, another status or another body: the proxy does not forward `/webhooks/` to `bot serve`,
  or something else answers there: ✗;
- no answer at all: a warning, not a failure — many hosts cannot reach their own public
  address (NAT hairpinning, split DNS) although the platform can;
- Feishu's long connection and DingTalk's Stream mode need no callback URL: –.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from adapters.dingtalk import simulate as dingtalk_simulate
from adapters.feishu import simulate as feishu_simulate
from adapters.wechat import crypto as wechat_crypto
from adapters.wechat import simulate as wechat_simulate
from adapters.wechat.crypto import decode_aes_key
from adapters.wechat_mp.simulate import verification_query
from bot.doctor.platforms import app_name, field_text
from bot.doctor.result import Result, Status, fail, ok, skip, warn
from bot.domain import DEFAULT_APP
from bot.errors import BotError
from bot.settings import Settings
from bot.settings.base import Section

VERIFY_TIMEOUT_S = 6.0
# The platforms that check a callback URL with a signed GET and an echostr.
ECHO_PLATFORMS = ("wecom", "wecom_kf", "wecom_aibot", "wechat_mp")
# The platforms that POST to it (their own check or every message), whatever the callback keys.
POST_PLATFORMS = ("feishu", "dingtalk")


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


@dataclass(frozen=True, slots=True)
class Probe:
    """One request as the platform sends it, and how to tell our bot's answer."""

    method: str
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    answered: Callable[[str], bool] = lambda _: False
    what: str = "answers the URL check"
    expects: str = "echo"
    keys: str = "Token/EncodingAESKey"  # what signs it, as the platform's console names it
    # Statuses that mean "a server with other keys": the bot refuses a bad signature with
    # 401; an event it cannot decrypt, or one with no event keys configured, with 400.
    refused: tuple[int, ...] = (401, 403)


def feishu_probe(section: Section, challenge: str) -> Probe:
    """Feishu's url_verification POST: the challenge and the Verification Token, encrypted
    and signed with the Encrypt Key when one is set; the bot echoes the challenge."""
    encrypt_key = field_text(section, "encrypt_key")
    headers, body = feishu_simulate.build_verification(
        challenge,
        verification_token=field_text(section, "verification_token"),
        encrypt_key=encrypt_key,
        timestamp=str(int(time.time())),
        nonce=secrets.token_hex(8),
        iv=os.urandom(16),
        signed=bool(encrypt_key),  # signed: another Encrypt Key is refused (401), not a 400
    )
    return Probe(
        "POST",
        headers=headers,
        body=body,
        answered=_json_field("challenge", challenge),
        expects="challenge",
        keys="Verification Token / Encrypt Key",
    )


def dingtalk_probe(section: Section) -> Probe:
    """A robot message POST signed with the app secret, as DingTalk's HTTP mode sends it: a
    group message that does not @-mention the robot, so the bot takes it and answers no one."""
    now_ms = int(time.time() * 1000)
    body = dingtalk_simulate.robot_body(
        "bot doctor",
        msg_id=f"doctor-{secrets.token_hex(8)}",
        staff_id="bot-doctor",
        conversation_id="cid-bot-doctor",
        session_webhook="",
        create_at_ms=now_ms,
        group=True,
        at_robot=False,
    )
    headers = dingtalk_simulate.robot_headers(
        app_secret=field_text(section, "app_secret"), timestamp_ms=now_ms
    )
    return Probe(
        "POST",
        headers=headers,
        body=json.dumps(body).encode(),
        answered=lambda text: _json(text) == {},
        what="accepts a signed robot message",
        expects="robot's answer {}",
        keys="AppSecret",
    )


def dingtalk_event_probe(section: Section) -> Probe:
    """The encrypted `check_url` event DingTalk POSTs when the event subscription URL is
    saved; the bot answers "success", encrypted and signed with the same keys."""
    token, aes_key = field_text(section, "token"), field_text(section, "aes_key")
    app_key = str(getattr(section, "app_key", ""))
    query, body = dingtalk_simulate.build_check_url(
        app_key=app_key,
        token=token,
        aes_key=aes_key,
        timestamp_ms=int(time.time() * 1000),
        nonce=secrets.token_hex(4),
        random_prefix=os.urandom(16),
    )

    def answered(text: str) -> bool:
        data = _json(text)
        if not isinstance(data, dict):
            return False
        sealed = {k: str(data.get(k, "")) for k in ("msg_signature", "timeStamp", "nonce")}
        encrypted = str(data.get("encrypt", ""))
        expected = wechat_crypto.signature(token, sealed["timeStamp"], sealed["nonce"], encrypted)
        if not encrypted or sealed["msg_signature"] != expected:
            return False
        try:
            key = decode_aes_key(aes_key)
            plain = wechat_crypto.decrypt(encrypted, aes_key=key, receiver_id=app_key)
        except BotError:
            return False
        return plain == b"success"

    return Probe(
        "POST",
        params=query,
        headers={"Content-Type": "application/json"},
        body=body,
        answered=answered,
        what="answers the event subscription's check_url",
        expects="encrypted success",
        keys="Token / aes_key of the event subscription",
        refused=(400, 401, 403),
    )


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _json_field(key: str, value: str) -> Callable[[str], bool]:
    def answered(text: str) -> bool:
        data = _json(text)
        return isinstance(data, dict) and data.get(key) == value

    return answered


def probe_for(platform: str, section: Section) -> list[Probe] | str:
    """The platform's requests to the URL, or why there is none to send."""
    if platform in ("feishu", "dingtalk") and getattr(section, "stream", False):
        mode = "long connection" if platform == "feishu" else "Stream mode"
        return f"{section.prefix}STREAM=true: events come over the {mode}, no callback URL"
    if platform == "feishu":
        return [feishu_probe(section, secrets.token_hex(8))]
    if platform == "dingtalk":
        probes = [dingtalk_probe(section)]
        if field_text(section, "aes_key"):
            probes.append(dingtalk_event_probe(section))
        return probes
    echo = secrets.token_hex(8)
    query = verification(platform, section, echo)
    if query is None:
        return "no usable Token / EncodingAESKey (see the callback key check)"
    return [Probe("GET", params=query, answered=lambda text: text == echo)]


async def check_public_verification(
    settings: Settings, platform: str, app: str, section: Section
) -> Result:
    """The platform's URL check (one of PLATFORMS) against `BOT_PUBLIC_URL`."""
    name = f"{app_name(platform, app)} public URL"
    base = settings.handoff.public_url.strip()
    if not base:
        return skip(name, "BOT_PUBLIC_URL not set")
    probes = probe_for(platform, section)
    if isinstance(probes, str):
        return skip(name, probes)
    url = webhook_url(base, platform, app)
    results = await asyncio.gather(*(_send(name, url, probe, section) for probe in probes))
    failed = [r for r in results if r.status is not Status.OK]
    if failed:
        return failed[0]
    return ok(name, f"{url} " + " and ".join(probe.what for probe in probes))


async def _send(name: str, url: str, probe: Probe, section: Section) -> Result:
    """One request as the platform sends it; OK (detail unused), or what to do."""
    try:
        timeout = aiohttp.ClientTimeout(total=VERIFY_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.request(
                probe.method,
                url,
                params=probe.params,
                headers=probe.headers,
                data=probe.body or None,
                allow_redirects=False,
            ) as resp,
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
    if status == 200 and probe.answered(body):
        return ok(name, f"{url} {probe.what}")
    if status in probe.refused:
        keys = probe.keys
        return fail(
            name,
            f"{url} refused the check signed with this host's keys (HTTP {status})",
            f"该地址背后的服务用的 {keys} 与本机 {section.prefix}* 不同："
            "确认请求到达的是这套部署，并与平台后台填写的一致",
            f"the server behind that URL has another {keys} than this host's "
            f"{section.prefix}*: make sure it reaches this deployment, with the keys the "
            "platform console shows",
        )
    return fail(
        name,
        f"{url} answered HTTP {status} without the {probe.expects}",
        "反向代理没有把 /webhooks/ 转发到 bot serve，或该地址上是别的服务：检查代理配置与路径",
        "the proxy does not forward /webhooks/ to bot serve, or another service answers "
        "there: check the proxy's routes and the path",
    )
