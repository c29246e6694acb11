"""`bot doctor`: checks the configured setup and says what to fix, in Chinese and English.

One line per check: ✓ passed, ✗ failed (with what to do), ! works but not as production
needs (a warning), – skipped (not configured). Exit status 0 when nothing failed, 1
otherwise (2 stays argparse's, for a bad flag). Every external call has a short timeout and
the checks run concurrently, so a run takes seconds even with everything unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Awaitable

from adapters import errcodes
from bot.cli.doctor import infra, models, platforms
from bot.cli.doctor.result import Result, Status, fail, from_errcode
from bot.errors import ConfigError
from bot.settings import Settings

FAILED = 1


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sub.add_parser(
        "doctor",
        help="check Redis, the database, each platform app and model endpoint (exit 0/1)",
    )


def cmd_doctor(_args: argparse.Namespace) -> int:
    try:
        settings = Settings.load()
    except ConfigError as exc:
        # Settings that do not load are the first thing to fix; nothing else can be checked.
        results = [_config_problem(exc)]
    else:
        results = asyncio.run(run_checks(settings))
    for result in results:
        print(result.line())
    failed = sum(r.status is Status.FAIL for r in results)
    print(f"{failed} failed" if failed else "all configured checks passed", file=sys.stderr)
    return FAILED if failed else 0


async def run_checks(settings: Settings) -> list[Result]:
    """Every check for the configured setup, concurrently, in a stable order."""
    engine = infra.database_engine(settings)
    try:
        checks: list[Awaitable[Result]] = [
            infra.check_redis(settings),
            asyncio.to_thread(infra.check_database, engine),
        ]
        for platform, app, section in platforms.appconfig.configured(settings):
            checks.append(platforms.check_token(settings, platform, app, section))
            callback = platforms.check_callback(platform, app, section)
            if callback is not None:
                checks.append(_done(callback))
        checks.append(_done(platforms.check_public_url(settings)))
        clients = models.backends(settings)
        checks += [models.check_model(client) for client in clients]
        if not clients:
            checks.append(_done(_no_model()))
        checks.append(models.check_embedding(settings, engine))
        return list(await asyncio.gather(*checks))
    finally:
        engine.dispose()


async def _done(result: Result) -> Result:
    return result


def _no_model() -> Result:
    return Result(Status.SKIP, "model", "none configured: answers come from the knowledge base")


_AES_KEY = re.compile(r"\b[A-Z_]*AES_KEY\b|EncodingAESKey")


def _config_problem(exc: ConfigError) -> Result:
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
