"""HTTP fuzz of the real web app: FUZZ_REQUESTS (2,000) requests per route, none answered 5xx.

The app is `create_app` over real Redis with all five platforms configured (a plaintext
Official Account and a plaintext Feishu app besides the encrypted defaults, through
bot.toml). Each webhook route, `/api/chat` and the transcript link get half unsigned junk
(random bytes, odd content types, huge and non-UTF-8 headers, wrong methods, malformed
query strings, non-ASCII signatures, 15-digit timestamps, UTF-7 XML, deep nesting) and half
requests that pass the signature but carry a payload of a wrong shape (tests/integration/
web/fuzz_probes.py). Requests go over raw sockets, so bytes no HTTP client would send
arrive as written. Every answer must be a 2xx or a 4xx: a 5xx, a dropped connection or a
hang is a bug.

Probes derive from FUZZ_SEED (repeatable; timestamps are fresh, signatures need it). A
longer campaign: FUZZ_REQUESTS=20000 FUZZ_SEED=7 pytest tests/integration/web/test_http_fuzz.py
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from sqlmodel import Session

from adapters.web import WebSender
from bot.broker import QUEUE
from bot.db.engine import get_engine
from bot.db.models import Conversation
from bot.domain import InboundMessage, Platform, Reply
from bot.handoff import state as handoff_state
from bot.settings import Settings
from bot.web import identity as web_identity
from tests.integration.web import fuzz_platforms as platforms
from tests.integration.web.fuzz_probes import (
    Context,
    Keys,
    Probe,
    signed_chat,
    signed_transcript,
    unsigned,
)
from tests.reports import report

REQUESTS = int(os.environ.get("FUZZ_REQUESTS", "2000"))
SEED = int(os.environ.get("FUZZ_SEED", "11"))
IN_FLIGHT = 16
NOWHERE = "http://127.0.0.1:9"  # the web process never calls a platform API here


@dataclass(frozen=True)
class Route:
    """One route of the fuzz: its path, method, the names it reads, its signed probes."""

    path: str
    method: str
    queries: tuple[str, ...]
    headers: tuple[str, ...]
    signed: Callable[[random.Random, Context], Probe]

    def probe(self, rng: random.Random, ctx: Context) -> Probe:
        if rng.random() < 0.5:
            return self.signed(rng, ctx)
        return unsigned(rng, self.path, self.method, self.queries, self.headers)


WECHAT_QUERY = ("msg_signature", "signature", "timestamp", "nonce", "echostr", "encrypt_type")
ROUTES = {
    "wecom": Route("/webhooks/wecom", "POST", WECHAT_QUERY, (), platforms.signed_wecom),
    "wecom_kf": Route("/webhooks/wecom_kf", "POST", WECHAT_QUERY, (), platforms.signed_wecom_kf),
    "wechat_mp": Route(
        "/webhooks/wechat_mp", "POST", (*WECHAT_QUERY, "openid"), (), platforms.signed_wechat_mp
    ),
    "dingtalk": Route(
        "/webhooks/dingtalk",
        "POST",
        ("msg_signature", "timeStamp", "nonce"),
        ("timestamp", "sign"),
        platforms.signed_dingtalk,
    ),
    "feishu": Route(
        "/webhooks/feishu",
        "POST",
        (),
        ("X-Lark-Signature", "X-Lark-Request-Timestamp", "X-Lark-Request-Nonce"),
        platforms.signed_feishu,
    ),
    "wecom_aibot": Route(
        "/webhooks/wecom_aibot", "POST", WECHAT_QUERY, (), platforms.signed_wecom_aibot
    ),
    "web chat": Route(
        "/api/chat", "POST", ("user", "sig"), ("Accept", "X-Forwarded-For"), signed_chat
    ),
    "transcript link": Route(
        "/api/conversations/1/transcript",
        "GET",
        ("exp", "sig"),
        ("Authorization",),
        signed_transcript,
    ),
}


def _bot_toml(keys: Keys, folder: Path) -> Path:
    path = folder / "bot.toml"
    path.write_text(
        f"""
[wechat_mp.plain]
app_id = "wxfuzzplain"
app_secret = "plain-secret"
token = "{keys.mp_token}"
api_base = "{NOWHERE}"

[feishu.plain]
app_id = "cli_fuzz_plain"
app_secret = "plain-secret"
verification_token = "{keys.fs_token}"
bot_open_id = "{keys.fs_bot}"
api_base = "{NOWHERE}"
""",
        encoding="utf-8",
    )
    return path


def fuzz_settings(make_settings: Any, keys: Keys, folder: Path) -> Settings:
    """Every platform (WeCom, 微信客服, 智能机器人, Official Account, DingTalk, Feishu) and web
    chat."""
    return cast(
        Settings,
        make_settings(
            core={
                "admin_token": keys.admin_token,
                "config_file": _bot_toml(keys, folder),
                "mp_passive_wait_s": 0,  # an accepted OA message is answered "success" at once
                "webchat_timeout_s": 10,
            },
            wecom={
                "corp_id": keys.corp_id,
                "agent_id": keys.agent_id,
                "secret": "wecom-secret",
                "token": keys.wecom_token,
                "aes_key": keys.wecom_aes,
                "api_base": NOWHERE,
            },
            wecom_kf={
                "WECOM_CORP_ID": keys.corp_id,
                "secret": "kf-secret",
                "token": keys.kf_token,
                "aes_key": keys.kf_aes,
                "WECOM_API_BASE": NOWHERE,
            },
            wechat_mp={
                "app_id": keys.mp_app_id,
                "app_secret": "mp-secret",
                "token": keys.mp_token,
                "aes_key": keys.mp_aes,
                "WECHAT_API_BASE": NOWHERE,
            },
            dingtalk={
                "app_key": keys.dt_key,
                "app_secret": keys.dt_secret,
                "token": keys.dt_token,
                "aes_key": keys.dt_aes,
                "api_base": NOWHERE,
            },
            wecom_aibot={"token": keys.aibot_token, "aes_key": keys.aibot_aes},
            feishu={
                "app_id": keys.fs_app_id,
                "app_secret": "feishu-secret",
                "verification_token": keys.fs_token,
                "encrypt_key": keys.fs_key,
                "bot_open_id": keys.fs_bot,
                "api_base": NOWHERE,
            },
        ),
    )


async def _answer_web_chat(redis: aioredis.Redis) -> None:
    """A stand-in worker: answers each queued web chat message at once, as WebSender does
    (the webhook messages it takes off the queue are left unanswered)."""
    sender = WebSender(redis)
    while True:
        item: Any = await redis.brpop([QUEUE], timeout=1)
        if item is None:
            continue
        payload = json.loads(json.loads(item[1])["body"])[0][0]
        if payload.get("platform") == Platform.WEB.value:
            reply = Reply.to(InboundMessage.from_json(payload), "好的")
            await sender.send(reply, cast(Any, None))
            await sender.finish(reply)


@pytest.fixture
async def web_chat_worker(redis_url: str) -> AsyncIterator[None]:
    redis = aioredis.Redis.from_url(redis_url)
    task = asyncio.create_task(_answer_web_chat(redis))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await redis.aclose()


async def _send(host: str, port: int, probe: Probe) -> int:
    """Send `probe` on its own connection; the answer's status, 0 when none came."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(probe.wire(f"{host}:{port}"))
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()  # the rest, until the server closes
    except ConnectionError:
        return 0
    finally:
        writer.close()
    parts = status_line.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _conversation(settings: Settings) -> int:
    with Session(get_engine(settings.core.effective_database_url())) as session:
        conv = Conversation(platform="wecom", app="default", external_id="fuzz-transcript")
        session.add(conv)
        session.commit()
        return conv.id or 0


@pytest.mark.timeout(300)
async def test_no_request_gets_a_5xx(
    make_settings, make_client, web_chat_worker, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys()
    settings = fuzz_settings(make_settings, keys, tmp_path)
    client = await make_client(settings)
    host, port = client.server.host, client.server.port
    sign_key = web_identity.configured_key(settings)
    assert sign_key is not None
    ctx = Context(
        keys=keys,
        now=time.time,
        sign_user=lambda user: web_identity.sign(sign_key, user),
        link=lambda conv, exp: handoff_state.link_signature(settings, conv, exp),
        conversation=_conversation(settings),
    )
    caplog.set_level(logging.WARNING)
    gate = asyncio.Semaphore(IN_FLIGHT)
    failures: list[tuple[str, int, Probe]] = []
    for name, route in ROUTES.items():
        rng = random.Random(f"{SEED}:{name}")
        probes = [route.probe(rng, ctx) for _ in range(REQUESTS)]
        started = time.perf_counter()

        async def one(probe: Probe) -> int:
            async with gate, asyncio.timeout(30):
                return await _send(host, port, probe)

        statuses = await asyncio.gather(*(one(p) for p in probes))
        took = time.perf_counter() - started
        failures += [(name, s, p) for s, p in zip(statuses, probes, strict=True) if not _ok(s)]
        report(f"fuzz HTTP {name}: {_counts(probes, statuses)}; {took:.1f} s")
    assert not failures, _describe(failures, caplog)


def _ok(status: int) -> bool:
    return 200 <= status < 300 or 400 <= status < 500


def _counts(probes: list[Probe], statuses: list[int]) -> str:
    """E.g. "2000 requests, 0 5xx; signed 998: 2xx 512, 4xx 486; unsigned …; 400: 1450, …"."""
    parts = [f"{len(probes)} requests, {sum(s >= 500 for s in statuses)} 5xx"]
    for label, signed in (("signed", True), ("unsigned", False)):
        mine = [s for p, s in zip(probes, statuses, strict=True) if p.signed is signed]
        ok = sum(200 <= s < 300 for s in mine)
        refused = sum(400 <= s < 500 for s in mine)
        parts.append(
            f"{label} {len(mine)}: 2xx {ok}, 4xx {refused}, other {len(mine) - ok - refused}"
        )
    refusals = ", ".join(f"{s}: {n}" for s, n in sorted(Counter(statuses).items()) if s >= 300)
    return "; ".join([*parts, refusals])


def _describe(failures: list[tuple[str, int, Probe]], caplog: pytest.LogCaptureFixture) -> str:
    lines = [f"{len(failures)} requests not answered with a 2xx or 4xx:"]
    for name, status, probe in failures[:10]:
        lines.append(
            f"  {name} -> {status}: {probe.method} {probe.path}?{probe.query[:200]} "
            f"headers={[(n, v[:80]) for n, v in probe.headers]} body={probe.body[:300]!r}"
        )
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_text]
    lines += [f"  logged: {r.getMessage()}\n{r.exc_text}" for r in errors[:3]]
    return "\n".join(lines)
