"""`bot stream dingtalk`: one replica holds the DingTalk Stream connection and feeds the queue.

Composition root for long connections: a Redis lease picks the single holder
(`stream:{platform}:{app}:holder`), the holder runs `StreamClient`, and each robot message
goes through `intake.accept` exactly like a webhook (dedupe, ticket, Celery). The holder also
writes `stream:{platform}:{app}:status` (short TTL) so `/readyz` in the web processes can
tell whether some replica has the connection up; the Prometheus gauges are per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from adapters.dingtalk import DingTalkAdapter
from adapters.dingtalk_stream import StreamClient, StreamState
from adapters.tokens import TokenCache
from bot import intake, metrics
from bot.domain import DEFAULT_APP, InboundMessage, Platform
from bot.errors import ConfigError
from bot.lease import Lease, run_while_holding
from bot.settings import Settings

log = logging.getLogger(__name__)

LEASE_TTL_S = 10.0
STATUS_EVERY_S = 5.0
# The status key outlives a few missed writes, no more: a dead holder shows within ~15 s.
STATUS_TTL_S = 15


def holder_key(platform: str, app: str) -> str:
    return f"stream:{platform}:{app}:holder"


def status_key(platform: str, app: str) -> str:
    return f"stream:{platform}:{app}:status"


async def read_status(redis: aioredis.Redis, platform: str, app: str) -> dict[str, Any] | None:
    """The holder's last published status, or None when no replica holds the connection."""
    raw = await redis.get(status_key(platform, app))
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def run_dingtalk(
    settings: Settings,
    stop: asyncio.Event,
    *,
    app: str = DEFAULT_APP,
    lease_ttl_s: float = LEASE_TTL_S,
    liveness_s: float = 180.0,
    heartbeat_s: float | None = 30.0,
    backoff_base_s: float = 1.0,
    status_every_s: float = STATUS_EVERY_S,
) -> None:
    """Run until `stop` is set: wait for the lease, then keep the Stream connection up."""
    d = settings.dingtalk
    if not d.enabled:
        raise ConfigError("DingTalk is not configured (DINGTALK_APP_KEY, DINGTALK_APP_SECRET)")
    if not settings.core.redis_url:
        raise ConfigError("REDIS_URL is not set (run `bot up` for an embedded Redis)")
    platform = Platform.DINGTALK.value
    labels = {"platform": platform, "app": app}
    redis = aioredis.Redis.from_url(
        settings.core.redis_url, socket_connect_timeout=2, socket_timeout=5
    )
    try:
        async with aiohttp.ClientSession() as http:
            adapter = DingTalkAdapter(
                app_key=d.app_key,
                app_secret=d.app_secret.get_secret_value(),
                robot_code=d.robot_code,
                api_base=d.api_base,
                oapi_base=d.oapi_base,
                tokens=TokenCache(redis),
                app=app,
            )
            lease = Lease(redis, holder_key(platform, app), ttl_s=lease_ttl_s)

            def parse(body: Mapping[str, Any]) -> InboundMessage | None:
                return adapter.parse_robot_message(body, now=time.time())

            async def on_message(msg: InboundMessage) -> None:
                # Raises IntakeUnavailableError when not queued: the frame is NACKed (500).
                await intake.accept(redis, msg)

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

            async def publish_status(client: StreamClient) -> None:
                last_connects = 0
                while True:
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
                            status_key(platform, app), json.dumps(status), ex=STATUS_TTL_S
                        )
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(status_every_s):
                            await changed.wait()

            async def work() -> None:
                client = StreamClient(
                    http=http,
                    api_base=d.api_base,
                    app_key=d.app_key,
                    app_secret=d.app_secret.get_secret_value(),
                    parse=parse,
                    on_message=on_message,
                    app=app,
                    liveness_s=liveness_s,
                    heartbeat_s=heartbeat_s,
                    backoff_base_s=backoff_base_s,
                    on_state=on_state,
                )
                status_task = asyncio.create_task(publish_status(client))
                try:
                    await client.run()
                finally:
                    status_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await status_task
                    with contextlib.suppress(aioredis.RedisError):
                        # Only our own status: a successor may already have written its own.
                        current = await read_status(redis, platform, app)
                        if current is not None and current.get("holder") == lease.owner:
                            await redis.delete(status_key(platform, app))

            def on_lease(held: bool) -> None:
                metrics.STREAM_LEASE_HELD.labels(**labels).set(1 if held else 0)
                if not held:
                    metrics.STREAM_CONNECTED.labels(**labels).set(0)

            on_lease(False)
            log.info("dingtalk stream %s: waiting for the lease (owner %s)", app, lease.owner)
            await run_while_holding(lease, work, stop, on_change=on_lease)
    finally:
        await redis.aclose()
