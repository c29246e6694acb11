"""Prometheus metrics, one module-level object each, served at `GET /metrics`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LLM_REQUESTS = Counter(
    "bot_llm_requests_total",
    "Model backend calls by outcome: ok, unavailable, rejected, or skipped (circuit open).",
    ["backend", "outcome"],
)
LLM_LATENCY = Histogram(
    "bot_llm_latency_seconds",
    "Time one model backend call took, successful or not.",
    ["backend"],
    # Model answers take seconds, not milliseconds: the default buckets stop at 10 s.
    buckets=(0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120),
)
WEBHOOKS = Counter(
    "bot_webhooks_total",
    "Webhook requests by outcome: queued, duplicate, handshake, ignored, rejected, "
    "too_large, unavailable.",
    ["platform", "outcome"],
)
WEBHOOK_LATENCY = Histogram(
    "bot_webhook_ack_seconds",
    "Time from receiving a webhook to answering the platform (verify, decrypt, dedupe, enqueue).",
    ["platform"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REPLIES = Counter(
    "bot_replies_total",
    "Inbound messages finished by the worker: answered (by a model), degraded, duplicate.",
    ["platform", "outcome"],
)
DELIVERIES = Counter(
    "bot_deliveries_total",
    "Reply parts delivered, by outcome: sent (platform API), passive (webhook answer), failed.",
    ["platform", "outcome"],
)
STREAM_CONNECTED = Gauge(
    "bot_stream_connected",
    "1 while this process holds an open long connection (DingTalk Stream) to the platform.",
    ["platform", "app"],
)
STREAM_LEASE_HELD = Gauge(
    "bot_stream_lease_held",
    "1 while this process holds the single-connection Redis lease for the platform app.",
    ["platform", "app"],
)
STREAM_LAST_FRAME = Gauge(
    "bot_stream_last_frame_timestamp_seconds",
    "Unix time of the last frame received on the long connection.",
    ["platform", "app"],
)
STREAM_CONNECTS = Counter(
    "bot_stream_connects_total",
    "Long connections opened (the first one and every reconnection).",
    ["platform", "app"],
)
TOOL_CALLS = Counter(
    "bot_tool_calls_total",
    "Agent tool calls by outcome: ok, unknown_tool, bad_arguments, timeout, tool_error.",
    ["tool", "outcome"],
)
TOOL_LATENCY = Histogram(
    "bot_tool_latency_seconds",
    "Time one agent tool call took (validation excluded).",
    ["tool"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
