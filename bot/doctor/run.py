"""Runs every check of the setup, concurrently; `bot doctor` prints them, `/readyz?verbose=1`
returns them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable

from adapters import errcodes
from bot.doctor import egress, infra, models, platforms, public, scopes, voice
from bot.doctor.result import Result, Status, fail, from_errcode
from bot.errors import ConfigError
from bot.settings import Settings
from bot.settings import apps as appconfig
from bot.settings.platforms import FeishuSettings, WeComSettings


def check_all() -> list[Result]:
    """Load the settings and run every check (a setting that does not load is the result)."""
    try:
        settings = Settings.load()
    except ConfigError as exc:
        # Settings that do not load are the first thing to fix; nothing else can be checked.
        return [config_problem(exc)]
    return asyncio.run(run_checks(settings))


async def run_bounded(settings: Settings, timeout_s: float) -> list[Result]:
    """`run_checks` for a web request: each check has its own short timeouts, and the whole
    is bounded too, so a page or a probe never hangs on one."""
    try:
        async with asyncio.timeout(timeout_s):
            return await run_checks(settings)
    except TimeoutError:
        return [
            fail(
                "doctor",
                "timed out",
                "在本机运行 bot doctor，看是哪一项检查卡住",
                "run `bot doctor` on this host to see which check hangs",
            )
        ]


async def run_checks(settings: Settings) -> list[Result]:
    """Every check for the configured setup, concurrently, in a stable order."""
    engine = infra.database_engine(settings)
    try:
        checks: list[Awaitable[Result | list[Result]]] = [
            infra.check_redis(settings),
            asyncio.to_thread(infra.check_database, engine),
        ]
        for platform, app, section in appconfig.configured(settings):
            checks.append(platforms.check_token(settings, platform, app, section))
            callback = platforms.check_callback(platform, app, section)
            if callback is not None:
                checks.append(_done(callback))
            keys_fit = callback is not None and callback.status is Status.OK
            if platform in public.POST_PLATFORMS or (
                keys_fit and platform in public.ECHO_PLATFORMS
            ):
                checks.append(public.check_public_verification(settings, platform, app, section))
            if isinstance(section, FeishuSettings):
                checks.append(scopes.check_feishu(settings, app, section))
            if isinstance(section, WeComSettings):
                checks.append(egress.check_wecom_trusted_ip(settings, app, section))
        checks.append(_done(platforms.check_public_url(settings)))
        checks.append(egress.check_echo_ip(settings))
        clients = models.backends(settings)
        checks += [models.check_model(client) for client in clients]
        seeing = settings.vision_backends()
        checks += [models.check_vision(c) for c in clients if c.name in seeing]
        if not clients:
            checks.append(_done(_no_model()))
        checks.append(models.check_embedding(settings, engine))
        checks.append(voice.check_speech(settings))
        found = await asyncio.gather(*checks)
        return [one for each in found for one in (each if isinstance(each, list) else [each])]
    finally:
        engine.dispose()


async def _done(result: Result) -> Result:
    return result


def _no_model() -> Result:
    return Result(Status.SKIP, "model", "none configured: answers come from the knowledge base")


_AES_KEY = re.compile(r"\b[A-Z_]*AES_KEY\b|EncodingAESKey")


def config_problem(exc: ConfigError) -> Result:
    detail = str(exc)
    if _AES_KEY.search(detail):
        entry = errcodes.callback(-40004)
        if entry is not None:
            return from_errcode("configuration", detail, entry)
    return fail(
        "configuration",
        detail,
        "按提示修正 .env 或 bot.toml（docs/configuration.md 列出每个设置）",
        "fix .env or bot.toml as it says (docs/configuration.md lists every setting)",
    )
