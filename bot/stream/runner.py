"""`bot stream dingtalk|feishu|wecom_aibot`: one replica holds the platform's long connection.

Composition root for long connections (DingTalk Stream, `adapters.dingtalk.stream`; the
Feishu long connection, `adapters.feishu.ws.client`; the WeCom AI bot's,
`adapters.wecom_aibot.longconn`): a Redis lease picks the single holder
(`stream:{platform}:{app}:holder`), the holder runs the platform's client, and each message
goes through `intake.accept` exactly like a webhook (dedupe, ticket, Celery). The holder also
writes `stream:{platform}:{app}:status` (short TTL) so `/readyz` in the web processes can
tell whether some replica has the connection up (and the web `/metrics` shows it as
`bot_stream_up`); the `bot_stream_connected`/`lease_held` gauges are per stream process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar, cast

import aiohttp
import redis.asyncio as aioredis

from adapters.base import Adapter
from adapters.dingtalk.adapter import DingTalkAdapter
from adapters.dingtalk.stream import StreamClient
from adapters.feishu.adapter import FeishuAdapter
from adapters.feishu.ws.client import FeishuWsClient
from adapters.reconnect import StreamState
from adapters.tokens import TokenCache
from adapters.wecom_aibot.longconn import AiBotWsClient
from bot import keys, metrics, wiring
from bot.domain import DEFAULT_APP, InboundMessage, Platform
from bot.errors import ConfigError
from bot.pipeline import events, intake
from bot.settings import DingTalkSettings, FeishuSettings, Settings, WeComAiBotSettings
from bot.settings import apps as appconfig
from bot.settings.base import Section
from bot.stream.lease import Lease, run_while_holding

log = logging.getLogger(__name__)

T = TypeVar("T")

STATUS_EVERY_S = 5.0


async def read_status(redis: aioredis.Redis, platform: str, app: str) -> dict[str, Any] | None:
    """The holder's last published status, or None when no replica holds the connection."""
    raw = await redis.get(keys.stream_status(platform, app))
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class _Client(Protocol):
    """What the holder needs of a platform's long-connection client."""

    state: StreamState

    async def run(self) -> None: ...


# Queues one message from the long connection; raising NACKs its frame.
Queue = Callable[[InboundMessage], Awaitable[None]]
# Builds one platform's client for the holder: (adapter, http, queue, on_state) -> client.
Connect = Callable[[Adapter, aiohttp.ClientSession, Queue, Callable[[StreamState], None]], _Client]


_LABELS = {
    Platform.DINGTALK: "DingTalk",
    Platform.FEISHU: "Feishu",
    Platform.WECOM_AIBOT: "WeCom AI bot",
}


def _section(settings: Settings, platform: Platform, app: str, model: type[T], names: str) -> T:
    found = appconfig.section(settings, platform.value, app)
    if not isinstance(found, model):
        raise ConfigError(
            f"{_LABELS.get(platform, platform.value)} app {app} is not configured "
            f"({names}, or a [{platform.value}.NAME] table of bot.toml)"
        )
    return found


async def run_dingtalk(
    settings: Settings,
    stop: asyncio.Event,
    *,
    app: str = DEFAULT_APP,
    lease_ttl_s: float = keys.STREAM_LEASE_TTL_S,
    liveness_s: float = 180.0,
    heartbeat_s: float | None = 30.0,
    backoff_base_s: float = 1.0,
    status_every_s: float = STATUS_EVERY_S,
) -> None:
    """Run until `stop` is set: wait for the lease, then keep the Stream connection up."""
    d = _section(
        settings, Platform.DINGTALK, app, DingTalkSettings, "DINGTALK_APP_KEY, DINGTALK_APP_SECRET"
    )

    def connect(
        adapter: Adapter,
        http: aiohttp.ClientSession,
        queue: Queue,
        on_state: Callable[[StreamState], None],
    ) -> _Client:
        dingtalk = cast(DingTalkAdapter, adapter)

        def parse(body: Mapping[str, Any]) -> InboundMessage | None:
            return dingtalk.parse_robot_message(body, now=time.time())

        return StreamClient(
            http=http,
            api_base=d.api_base,
            app_key=d.app_key,
            app_secret=d.app_secret.get_secret_value(),
            parse=parse,
            on_message=queue,
            app=app,
            liveness_s=liveness_s,
            heartbeat_s=heartbeat_s,
            backoff_base_s=backoff_base_s,
            on_state=on_state,
        )

    await _hold(
        settings, stop, Platform.DINGTALK.value, app, d, connect, lease_ttl_s, status_every_s
    )


async def run_feishu(
    settings: Settings,
    stop: asyncio.Event,
    *,
    app: str = DEFAULT_APP,
    lease_ttl_s: float = keys.STREAM_LEASE_TTL_S,
    liveness_s: float | None = None,
    backoff_base_s: float = 1.0,
    status_every_s: float = STATUS_EVERY_S,
) -> None:
    """Run until `stop` is set: wait for the lease, then keep the Feishu long connection up."""
    f = _section(
        settings,
        Platform.FEISHU,
        app,
        FeishuSettings,
        "FEISHU_APP_ID, FEISHU_APP_SECRET, FEISHU_VERIFICATION_TOKEN",
    )

    def connect(
        adapter: Adapter,
        http: aiohttp.ClientSession,
        queue: Queue,
        on_state: Callable[[StreamState], None],
    ) -> _Client:
        feishu = cast(FeishuAdapter, adapter)

        async def on_event(payload: bytes) -> None:
            # The same normalisation and intake as the webhook; raising NACKs the frame.
            await feishu.prepare(http)
            msg = feishu.parse_event(payload)
            if msg is not None:
                await queue(msg)

        return FeishuWsClient(
            http=http,
            api_base=f.api_base,
            app_id=f.app_id,
            app_secret=f.app_secret.get_secret_value(),
            on_event=on_event,
            app=app,
            liveness_s=liveness_s,
            backoff_base_s=backoff_base_s,
            on_state=on_state,
        )

    await _hold(settings, stop, Platform.FEISHU.value, app, f, connect, lease_ttl_s, status_every_s)


async def run_wecom_aibot(
    settings: Settings,
    stop: asyncio.Event,
    *,
    app: str = DEFAULT_APP,
    lease_ttl_s: float = keys.STREAM_LEASE_TTL_S,
    heartbeat_s: float = 30.0,
    liveness_s: float | None = None,
    backoff_base_s: float = 1.0,
    status_every_s: float = STATUS_EVERY_S,
) -> None:
    """Run until `stop` is set: wait for the lease, then keep the AI bot's websocket up.

    Answers reach the socket through the Redis outbox (adapters/wecom_aibot/outbox.py),
    read on a connection of its own: BLPOP holds it while it waits.
    """
    w = _section(
        settings,
        Platform.WECOM_AIBOT,
        app,
        WeComAiBotSettings,
        "WECOM_AIBOT_MODE=longconn, WECOM_AIBOT_BOT_ID, WECOM_AIBOT_SECRET",
    )
    if w.mode != "longconn":
        raise ConfigError(f"WeCom AI bot app {app} is in webhook mode (WECOM_AIBOT_MODE=longconn)")
    w.check()
    if not settings.core.redis_url:
        raise ConfigError("REDIS_URL is not set (run `bot up` for an embedded Redis)")
    outbox_redis = aioredis.Redis.from_url(
        settings.core.redis_url, socket_connect_timeout=2, socket_timeout=5
    )

    def connect(
        adapter: Adapter,  # noqa: ARG001  # answers go through the outbox, not the adapter
        http: aiohttp.ClientSession,
        queue: Queue,
        on_state: Callable[[StreamState], None],
    ) -> _Client:
        return AiBotWsClient(
            http=http,
            redis=outbox_redis,
            bot_id=w.bot_id,
            secret=w.secret.get_secret_value(),
            on_message=queue,
            ws_url=w.ws_url,
            app=app,
            welcome_text=w.welcome_text,
            heartbeat_s=heartbeat_s,
            liveness_s=liveness_s,
            backoff_base_s=backoff_base_s,
            on_state=on_state,
        )

    try:
        await _hold(
            settings,
            stop,
            Platform.WECOM_AIBOT.value,
            app,
            w,
            connect,
            lease_ttl_s,
            status_every_s,
        )
    finally:
        await outbox_redis.aclose()


async def _hold(
    settings: Settings,
    stop: asyncio.Event,
    platform: str,
    app: str,
    section: Section,
    connect: Connect,
    lease_ttl_s: float,
    status_every_s: float,
) -> None:
    """Wait for the lease; while held, run the client and publish its status to Redis."""
    if not settings.core.redis_url:
        raise ConfigError("REDIS_URL is not set (run `bot up` for an embedded Redis)")
    labels = {"platform": platform, "app": app}
    redis = aioredis.Redis.from_url(
        settings.core.redis_url, socket_connect_timeout=2, socket_timeout=5
    )
    try:
        async with aiohttp.ClientSession() as http:
            lease = Lease(redis, keys.stream_holder(platform, app), ttl_s=lease_ttl_s)
            # Set when the connection comes up or goes down: publish the status at once.
            changed = asyncio.Event()
            published = [False]

            def on_state(state: StreamState) -> None:
                if state.connected != published[0]:
                    published[0] = state.connected
                    changed.set()
                metrics.STREAM_CONNECTED.labels(**labels).set(1 if state.connected else 0)
                if state.last_frame_at is not None:
                    metrics.STREAM_LAST_FRAME.labels(**labels).set(state.last_frame_at)

            async def publish_status(client: _Client, done: asyncio.Event) -> None:
                last_connects = 0
                # Ends on `done` as well as on a cancel: a cancel that lands as the wait's own
                # timeout fires can be taken for that timeout on 3.11, and the loop went on
                # (a fresh-clone run saw a replica still stopping 10 s after stop).
                while not done.is_set():
                    changed.clear()
                    state = client.state
                    if state.connects > last_connects:
                        metrics.STREAM_CONNECTS.labels(**labels).inc(state.connects - last_connects)
                        last_connects = state.connects
                    status = {
                        "connected": state.connected,
                        "last_frame_at": state.last_frame_at,
                        "connects": state.connects,
                        "holder": lease.owner,
                        "at": time.time(),
                    }
                    with contextlib.suppress(aioredis.RedisError):
                        await redis.set(
                            keys.stream_status(platform, app),
                            json.dumps(status),
                            ex=keys.STREAM_STATUS_TTL_S,
                        )
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(status_every_s):
                            await changed.wait()

            async def queue(msg: InboundMessage) -> None:
                # As a webhook does. Raises IntakeUnavailableError when not queued: the frame
                # is NACKed, and the platform delivers it again.
                if await intake.accept(redis, msg) and events.is_platform_event(msg):
                    events.observe(msg)  # recorded by the worker, not answered

            async def work() -> None:
                adapter = wiring.adapter_for(
                    section, app=app, settings=settings, tokens=TokenCache(redis), redis=redis
                )
                client = connect(adapter, http, queue, on_state)
                done = asyncio.Event()  # this connection's life is over: stop publishing
                status_task = asyncio.create_task(publish_status(client, done))
                try:
                    await client.run()
                finally:
                    done.set()
                    changed.set()
                    status_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await status_task
                    with contextlib.suppress(aioredis.RedisError):
                        # Only our own status: a successor may already have written its own.
                        current = await read_status(redis, platform, app)
                        if current is not None and current.get("holder") == lease.owner:
                            await redis.delete(keys.stream_status(platform, app))

            def on_lease(held: bool) -> None:
                metrics.STREAM_LEASE_HELD.labels(**labels).set(1 if held else 0)
                if not held:
                    metrics.STREAM_CONNECTED.labels(**labels).set(0)

            on_lease(False)
            log.info("%s stream %s: waiting for the lease (owner %s)", platform, app, lease.owner)
            await run_while_holding(lease, work, stop, on_change=on_lease)
    finally:
        await redis.aclose()
