"""`bot simulate`: send a webhook to a running server exactly as the platform would."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from typing import Any, TypeVar

import aiohttp
from pydantic import SecretStr

from adapters.wecom import simulate as wecom_simulate
from bot.cli.embedded import load_sandbox_env
from bot.domain import DEFAULT_APP
from bot.errors import ConfigError
from bot.settings import (
    DingTalkSettings,
    FeishuSettings,
    Settings,
    WeChatMPSettings,
    WeComKfSettings,
    WeComSettings,
)
from bot.settings import apps as appconfig

T = TypeVar("T")


def _hook(base: str, platform: str, app: str) -> str:
    """The webhook URL of `platform`/`app` (the default app has the short one)."""
    return f"{base}/webhooks/{platform}" + ("" if app == DEFAULT_APP else f"/{app}")


def _app_section(settings: Settings, platform: str, app: str, model: type[T]) -> T | None:
    """A named app's settings section from bot.toml; None for the default app."""
    if app == DEFAULT_APP:
        return None
    found = appconfig.section(settings, platform, app)
    if not isinstance(found, model):
        raise ConfigError(f"{platform} app {app} is not configured (no [{platform}.{app}] table)")
    return found


def _wecom_settings(settings: Settings, app: str = DEFAULT_APP) -> tuple[WeComSettings, bool]:
    """The configured WeCom app, or the sandbox app `bot up` made; (settings, is_sandbox)."""
    named = _app_section(settings, "wecom", app, WeComSettings)
    if named is not None:
        return named, False
    if settings.wecom.enabled:
        return settings.wecom, settings.core.sandbox
    values = load_sandbox_env(settings.core.data_dir)
    if not values:
        raise ConfigError(
            "WeCom is not configured (WECOM_*) and no sandbox app exists: run `bot up` first"
        )
    wecom = WeComSettings(
        _env_file=None,  # type: ignore[call-arg]
        corp_id=values["WECOM_CORP_ID"],
        agent_id=values["WECOM_AGENT_ID"],
        secret=SecretStr(values["WECOM_SECRET"]),
        token=SecretStr(values["WECOM_TOKEN"]),
        aes_key=SecretStr(values["WECOM_AES_KEY"]),
        api_base=values["WECOM_API_BASE"],
    )
    return wecom, True


async def wecom(
    base: str, settings: Settings, user: str, text: str, wait_s: float, app_name: str = DEFAULT_APP
) -> int:
    """POST a signed, encrypted text callback; in sandbox mode also print the bot's reply."""
    app, sandbox = _wecom_settings(settings, app_name)
    now = int(time.time())
    query, body = wecom_simulate.build_callback(
        text,
        corp_id=app.corp_id,
        agent_id=app.agent_id,
        token=app.token.get_secret_value(),
        aes_key=app.aes_key.get_secret_value(),
        from_user=user,
        msg_id=str(secrets.randbelow(10**18) + 10**18),
        create_time=now,
        timestamp=str(now),
        nonce=str(secrets.randbelow(10**9)),
        random_prefix=os.urandom(16),
    )
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=wait_s + 10)) as http:
        since = 0
        if sandbox:
            async with http.get(f"{base}/sandbox/wecom/sent", params={"since": "0"}) as resp:
                since = (await resp.json())["next"] if resp.status == 200 else 0
        url = _hook(base, "wecom", app_name)
        async with http.post(
            url, params=query, data=body, headers={"Content-Type": "text/xml"}
        ) as resp:
            answer = await resp.text()
            print(f"POST {_hook('', 'wecom', app_name)} -> {resp.status} {answer!r}")
            if resp.status != 200:
                return 1
        if not sandbox:
            print("accepted; the reply goes out through WeCom's message/send API")
            return 0
        replies = await _sandbox_replies(http, base, user, since, wait_s)
    if not replies:
        print(f"no reply within {wait_s:.0f}s", file=sys.stderr)
        return 1
    for message in replies:
        print(f"message/send to {message['touser']}: {message['text']['content']}")
    return 0


async def _sandbox_replies(
    http: aiohttp.ClientSession, base: str, user: str, since: int, wait_s: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + wait_s
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        async with http.get(f"{base}/sandbox/wecom/sent", params={"since": str(since)}) as resp:
            data = await resp.json()
        since = data["next"]
        found.extend(m for m in data["messages"] if m.get("touser") == user)
        if found:
            await asyncio.sleep(0.5)  # let the remaining parts of a long reply arrive
            async with http.get(f"{base}/sandbox/wecom/sent", params={"since": str(since)}) as r:
                found.extend(m for m in (await r.json())["messages"] if m.get("touser") == user)
            return found
        await asyncio.sleep(0.3)
    return found


async def web(
    base: str, user: str, text: str, wait_s: float, *, settings: Settings | None = None
) -> int:
    """POST to /api/chat as `user` (signed with the server's key from `settings`), print the reply.

    Without settings the server issues a new web user (bot/web/identity.py).
    """
    from bot.web import identity as web_identity

    who = {"user": user, "sig": await web_identity.sign_for(settings, user)} if settings else {}
    timeout = aiohttp.ClientTimeout(total=wait_s + 10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(f"{base}/api/chat", json={**who, "text": text}) as resp,
    ):
        data = await resp.json()
        if resp.status != 200:
            print(f"POST /api/chat -> {resp.status} {data}", file=sys.stderr)
            return 1
    print(data["reply"])
    return 0


async def dingtalk(
    base: str,
    settings: Settings,
    text: str,
    group: bool,
    user: str,
    wait_s: float,
    app_name: str = DEFAULT_APP,
) -> int:
    """POST a signed robot message whose sessionWebhook is a local listener; print the reply.

    The listener runs on 127.0.0.1, so the reply arrives when the worker runs on this host.
    """
    from aiohttp import web as aioweb

    from adapters.dingtalk import simulate as dingtalk_simulate

    app_settings = _app_section(settings, "dingtalk", app_name, DingTalkSettings) or (
        settings.dingtalk
    )
    if not app_settings.enabled:
        raise ConfigError("DingTalk is not configured (DINGTALK_APP_KEY, DINGTALK_APP_SECRET)")
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def session(request: aioweb.Request) -> aioweb.Response:
        received.put_nowait(await request.json())
        return aioweb.json_response({"errcode": 0, "errmsg": "ok"})

    listener = aioweb.Application()
    listener.router.add_post("/session", session)
    runner = aioweb.AppRunner(listener, access_log=None)
    await runner.setup()
    try:
        site = aioweb.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        now_ms = int(time.time() * 1000)
        headers, body = dingtalk_simulate.build_robot_message(
            text,
            app_secret=app_settings.app_secret.get_secret_value(),
            msg_id="msg" + secrets.token_urlsafe(16),
            staff_id=user,
            conversation_id="cidSimulatedGroup" if group else f"cidSimulated-{user}",
            session_webhook=f"http://{host}:{port}/session",
            timestamp_ms=now_ms,
            group=group,
            robot_code=app_settings.robot_code or app_settings.app_key,
        )
        timeout = aiohttp.ClientTimeout(total=wait_s + 10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(_hook(base, "dingtalk", app_name), data=body, headers=headers) as resp,
        ):
            answer = await resp.text()
            print(f"POST {_hook('', 'dingtalk', app_name)} -> {resp.status} {answer!r}")
            if resp.status != 200:
                return 1
        try:
            replies = [await asyncio.wait_for(received.get(), wait_s)]
        except TimeoutError:
            print(f"no reply on the sessionWebhook within {wait_s:.0f}s", file=sys.stderr)
            return 1
        await asyncio.sleep(0.5)  # let the remaining parts of a long reply arrive
        while not received.empty():
            replies.append(received.get_nowait())
    finally:
        await runner.cleanup()
    for message in replies:
        print(f"sessionWebhook: {message.get('markdown', {}).get('text', message)}")
    return 0


async def feishu(
    base: str,
    settings: Settings,
    text: str,
    group: bool,
    mention: bool,
    user: str,
    wait_s: float,
    app_name: str = DEFAULT_APP,
) -> int:
    """POST an encrypted, signed ``im.message.receive_v1`` event as Feishu would."""
    from adapters.feishu import simulate as feishu_simulate

    app = _app_section(settings, "feishu", app_name, FeishuSettings) or settings.feishu
    if not app.enabled:
        raise ConfigError("Feishu is not configured (FEISHU_APP_ID, FEISHU_APP_SECRET, ...)")
    now = int(time.time())
    open_id = user if user.startswith("ou_") else f"ou_{user}"
    headers, body = feishu_simulate.build_message(
        text,
        app_id=app.app_id,
        verification_token=app.verification_token.get_secret_value(),
        encrypt_key=app.encrypt_key.get_secret_value(),
        user_open_id=open_id,
        message_id=f"om_sim_{secrets.token_hex(12)}",
        chat_id="oc_sim_group" if group else f"oc_sim_{user}",
        event_id=secrets.token_hex(16),
        now=now,
        nonce=secrets.token_hex(8),
        iv=os.urandom(16),
        group=group,
        mention_bot=mention,
        bot_open_id=app.bot_open_id or "ou_bot",
    )
    timeout = aiohttp.ClientTimeout(total=wait_s + 10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(_hook(base, "feishu", app_name), data=body, headers=headers) as resp,
    ):
        answer = await resp.text()
        print(f"POST {_hook('', 'feishu', app_name)} -> {resp.status} {answer!r}")
        if resp.status != 200:
            return 1
    print("accepted; the reply goes out through Feishu's im/v1/messages/{message_id}/reply API")
    return 0


async def wechat_mp(
    base: str, settings: Settings, user: str, text: str, wait_s: float, app_name: str = DEFAULT_APP
) -> int:
    """POST a text message as WeChat would: plaintext mode, or safe mode when a key is set."""
    from adapters.wechat_mp import simulate as wechat_mp_simulate

    app = _app_section(settings, "wechat_mp", app_name, WeChatMPSettings) or settings.wechat_mp
    if not app.enabled:
        raise ConfigError("WeChat MP is not configured (WECHAT_MP_APP_ID, _APP_SECRET, _TOKEN)")
    now = int(time.time())
    openid = user if user.startswith("o") else f"o{user}"
    xml = wechat_mp_simulate.text_xml(
        text,
        from_user=openid,
        to_user="gh_simulated",
        msg_id=str(secrets.randbelow(10**18) + 10**18),
        create_time=now,
    )
    token = app.token.get_secret_value()
    aes_key = app.aes_key.get_secret_value()
    nonce = str(secrets.randbelow(10**9))
    if aes_key:
        query, body = wechat_mp_simulate.safe_post(
            xml,
            token=token,
            aes_key=aes_key,
            app_id=app.app_id,
            timestamp=str(now),
            nonce=nonce,
            openid=openid,
            to_user="gh_simulated",
            random_prefix=os.urandom(16),
        )
    else:
        query, body = wechat_mp_simulate.plain_post(
            xml, token=token, timestamp=str(now), nonce=nonce, openid=openid
        )
    mode = "safe" if aes_key else "plaintext"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=wait_s + 10)) as http,
        http.post(
            _hook(base, "wechat_mp", app_name),
            params=query,
            data=body,
            headers={"Content-Type": "text/xml"},
        ) as resp,
    ):
        answer = await resp.text()
    print(f"POST {_hook('', 'wechat_mp', app_name)} ({mode} mode) -> {resp.status} {answer!r}")
    if resp.status != 200:
        return 1
    if answer.startswith("<xml>"):
        content = wechat_mp_simulate.passive_content(answer, aes_key=aes_key, app_id=app.app_id)
        print(f"passive reply: {content!r}")
        return 0
    print(f"accepted; the reply goes to {openid} through message/custom/send")
    return 0


SIM_OPEN_KFID = "wkSimulatedKfAccount"


async def wecom_kf(
    base: str, settings: Settings, user: str, text: str, wait_s: float, app_name: str = DEFAULT_APP
) -> int:
    """POST a signed, encrypted ``kf_msg_or_event`` callback as WeCom does for 微信客服.

    The callback only says "pull now" (docs/protocols/wecom-kf.md). In trial mode (BOT_SANDBOX with
    the sandbox WECOM_API_BASE) the text is first put in the server's 微信客服 stand-in, so the
    worker's kf/sync_msg returns it, and the kf/send_msg answer is printed. Against WeCom itself
    only the callback path can be exercised: the real sync_msg knows no simulated text.
    """
    from adapters.wecom_kf import simulate as wecom_kf_simulate

    kf = _app_section(settings, "wecom_kf", app_name, WeComKfSettings) or settings.wecom_kf
    if not kf.enabled:
        raise ConfigError(
            "微信客服 is not configured "
            "(WECOM_CORP_ID, WECOM_KF_SECRET, WECOM_KF_TOKEN, WECOM_KF_AES_KEY)"
        )
    sandbox = settings.core.sandbox and "/sandbox/wecom" in kf.api_base
    user = user if user.startswith("wm") else f"wm{user}"
    now = int(time.time())
    query, body = wecom_kf_simulate.build_callback(
        corp_id=kf.corp_id,
        token=kf.token.get_secret_value(),
        aes_key=kf.aes_key.get_secret_value(),
        sync_token=f"SIM{secrets.token_hex(12)}",
        open_kfid=SIM_OPEN_KFID,
        create_time=now,
        timestamp=str(now),
        nonce=str(secrets.randbelow(10**9)),
        random_prefix=os.urandom(16),
    )
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=wait_s + 10)) as http:
        since = 0
        if sandbox:
            async with http.get(f"{base}/sandbox/wecom/kf/sent", params={"since": "0"}) as resp:
                since = (await resp.json())["next"]
            message = {"open_kfid": SIM_OPEN_KFID, "external_userid": user, "text": text}
            async with http.post(f"{base}/sandbox/wecom/kf/inject", json=message) as resp:
                if (await resp.json()).get("errcode") != 0:
                    print("the sandbox refused the message", file=sys.stderr)
                    return 1
        async with http.post(
            _hook(base, "wecom_kf", app_name),
            params=query,
            data=body,
            headers={"Content-Type": "text/xml"},
        ) as resp:
            answer = await resp.text()
            print(f"POST {_hook('', 'wecom_kf', app_name)} -> {resp.status} {answer!r}")
            if resp.status != 200:
                return 1
        if not sandbox:
            print(
                "callback accepted; the worker now pulls kf/sync_msg from WeCom, which does not "
                "hold this simulated text (use `bot up` trial mode for a full round trip)"
            )
            return 0
        replies = await _kf_sandbox_replies(http, base, user, since, wait_s)
    if not replies:
        print(f"no reply within {wait_s:.0f}s", file=sys.stderr)
        return 1
    for reply in replies:
        print(f"kf/send_msg to {reply['touser']}: {reply['content']}")
    return 0


async def _kf_sandbox_replies(
    http: aiohttp.ClientSession, base: str, user: str, since: int, wait_s: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        async with http.get(f"{base}/sandbox/wecom/kf/sent", params={"since": str(since)}) as r:
            data = await r.json()
        found = [m for m in data["messages"] if m.get("touser") == user]
        if found:
            return found
        await asyncio.sleep(0.3)
    return []
