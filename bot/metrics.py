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
    "too_large, unavailable, refresh (a stream's text so far, WeCom AI bot).",
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
STREAM_UP = Gauge(
    "bot_stream_up",
    "1 while some replica holds an open long connection, as the web process reads the holder's "
    "status from Redis (the stream itself runs in `bot stream`).",
    ["platform", "app"],
)
STREAM_HOLDER_LAST_FRAME = Gauge(
    "bot_stream_holder_last_frame_timestamp_seconds",
    "Unix time of the last frame the holder received, as published to Redis.",
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
AGENT_TURNS = Counter(
    "bot_agent_turns_total",
    "Tool-loop turns by outcome: answered, capped (steps ran out, answered without tools), "
    "failed (no model answered).",
    ["outcome"],
)
AGENT_TOOL_STEPS = Histogram(
    "bot_agent_tool_steps",
    "Tool steps (model calls that asked for tools) in one agent turn.",
    buckets=(0, 1, 2, 3, 4, 6, 10),
)
LLM_TOKENS = Counter(
    "bot_llm_tokens_total",
    "Model tokens spent, by backend and kind (prompt or completion); answers and summaries.",
    ["backend", "kind"],
)
RATE_LIMITED = Counter(
    "bot_rate_limited_total",
    "Messages over a user's rate limit, by window (minute, day) and action (notice, silent).",
    ["platform", "window", "action"],
)
COALESCED = Counter(
    "bot_coalesced_messages_total",
    "Messages answered as part of an earlier message's turn (burst coalescing).",
    ["platform"],
)
PLATFORM_EVENTS = Counter(
    "bot_platform_events_total",
    "Platform events queued to be recorded (not answered), by event type.",
    ["platform", "event"],
)
PLATFORM_ERRORS = Counter(
    "bot_platform_errors_total",
    "Platform API errors by errcode: each known code (docs/troubleshooting.md explains it), "
    "`other` for the rest.",
    ["platform", "errcode"],
)
MEDIA_DOWNLOADS = Counter(
    "bot_media_downloads_total",
    "Media sent by users, by outcome: saved, too_large, refused, failed.",
    ["platform", "outcome"],
)
VOICE_TRANSCRIPTIONS = Counter(
    "bot_voice_transcriptions_total",
    "Voice messages sent to speech recognition, by outcome: transcribed, empty, too_long, "
    "corrupt, not_audio, no_decoder, asr_busy, asr_refused.",
    ["platform", "outcome"],
)
FILES_READ = Counter(
    "bot_files_read_total",
    "Files sent by users, read as text (bot/pipeline/files.py), by outcome: read, scan, picture, "
    "file_type, file_mismatch, file_corrupt, file_encrypted, file_empty, file_scanned, "
    "file_too_large, file_too_slow.",
    ["platform", "outcome"],
)
VOICE_SECONDS = Counter(
    "bot_voice_seconds_total",
    "Seconds of speech transcribed (what a per-second ASR price is paid on).",
    ["platform"],
)
