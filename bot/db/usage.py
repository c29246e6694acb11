"""Token accounting: what each answer (and memory summary) cost, per conversation.

One `TokenUsage` row per answer message (unique with its purpose, so a redelivered task
records nothing twice) and the Prometheus counter `bot_llm_tokens_total{backend,kind}`,
counted only when the row is new. Media the models worked on (seconds of voice transcribed,
pictures shown to a vision model) are `MediaUsage` rows, one per message and kind
(`record_media`). `report` feeds the admin route `GET /api/usage`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from bot import metrics
from bot.db.models import Conversation, MediaUsage, TokenUsage
from bot.db.records import ensure_conversation, insert_new
from bot.domain import InboundMessage

TOP_CONVERSATIONS = 10
AUDIO = "audio"  # MediaUsage.kind: seconds of voice sent to speech recognition
IMAGE = "image"  # MediaUsage.kind: pictures shown to a vision model


def record(
    session: Session,
    *,
    conversation_id: int,
    message_id: int,
    purpose: str,
    backend: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> bool:
    """Store the usage once; True when this call stored it (and counted it in metrics)."""
    row = store(
        session,
        conversation_id=conversation_id,
        message_id=message_id,
        purpose=purpose,
        backend=backend,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )
    session.commit()
    count(row)
    return row is not None


def store(
    session: Session,
    *,
    conversation_id: int,
    message_id: int,
    purpose: str,
    backend: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> TokenUsage | None:
    """`record` without the commit and the metrics: the new row, or None when nothing was
    stored. The caller commits, then `count`s it (a rolled-back row is never counted)."""
    if prompt_tokens <= 0 and completion_tokens <= 0:
        return None  # no model call (FAQ, rule, degraded) or a backend that reports nothing
    row = TokenUsage(
        conversation_id=conversation_id,
        message_id=message_id,
        purpose=purpose,
        backend=backend,
        prompt_tokens=max(0, prompt_tokens),
        completion_tokens=max(0, completion_tokens),
    )
    if insert_new(session, row, ("message_id", "purpose"), commit=False) is None:
        return None  # recorded before a crash; the retry must not count it again
    return row


def count(row: TokenUsage | None) -> None:
    """Count a committed new usage row in `bot_llm_tokens_total`."""
    if row is not None:
        count_tokens(row.backend, row.prompt_tokens, row.completion_tokens)


def count_tokens(backend: str, prompt_tokens: int, completion_tokens: int) -> None:
    """Count tokens of a committed new usage row in `bot_llm_tokens_total`."""
    label = backend or "unknown"
    metrics.LLM_TOKENS.labels(label, "prompt").inc(prompt_tokens)
    metrics.LLM_TOKENS.labels(label, "completion").inc(completion_tokens)


def record_media(session: Session, msg: InboundMessage, kind: str, amount: float) -> bool:
    """Store what `msg` made the models work on (AUDIO seconds, IMAGE count) once; True when
    this call stored it."""
    if amount <= 0:
        return False
    conv = ensure_conversation(session, msg)
    row = MediaUsage(
        conversation_id=conv.id or 0, event_id=msg.event_id, kind=kind, amount=float(amount)
    )
    return insert_new(session, row, ("conversation_id", "event_id", "kind")) is not None


def report(session: Session, days: int) -> dict[str, Any]:
    """Totals per platform/app and the conversations that spent most, over the last `days`."""
    since = datetime.now(UTC) - timedelta(days=days)
    prompt = func.sum(TokenUsage.prompt_tokens)
    completion = func.sum(TokenUsage.completion_tokens)
    joined = (
        select(col(Conversation.platform), col(Conversation.app), prompt, completion, func.count())
        .select_from(TokenUsage)
        .join(Conversation, col(Conversation.id) == col(TokenUsage.conversation_id))
        .where(col(TokenUsage.created_at) >= since)
    )
    per_app = session.execute(joined.group_by(Conversation.platform, Conversation.app)).all()
    top = session.execute(
        select(
            col(Conversation.id),
            col(Conversation.platform),
            col(Conversation.app),
            col(Conversation.external_id),
            prompt,
            completion,
        )
        .select_from(TokenUsage)
        .join(Conversation, col(Conversation.id) == col(TokenUsage.conversation_id))
        .where(col(TokenUsage.created_at) >= since)
        .group_by(
            col(Conversation.id),
            col(Conversation.platform),
            col(Conversation.app),
            col(Conversation.external_id),
        )
        .order_by((prompt + completion).desc())
        .limit(TOP_CONVERSATIONS)
    ).all()
    media = _media(session, since)
    apps: dict[tuple[str, str], dict[str, Any]] = {}
    for platform, app, p, c, n in per_app:
        entry = apps[(platform, app)] = _app_entry(platform, app)
        entry.update(prompt_tokens=int(p or 0), completion_tokens=int(c or 0), calls=int(n or 0))
    for (_, platform, app, _), (seconds, pictures) in media.items():
        entry = apps.setdefault((platform, app), _app_entry(platform, app))
        entry["audio_seconds"] += seconds
        entry["images"] += pictures
    totals = list(apps.values())
    for t in totals:
        t["audio_seconds"] = round(t["audio_seconds"], 2)
    by_conversation = {key[0]: value for key, value in media.items()}
    return {
        "days": days,
        "since": since.isoformat(),
        "prompt_tokens": sum(t["prompt_tokens"] for t in totals),
        "completion_tokens": sum(t["completion_tokens"] for t in totals),
        "audio_seconds": round(sum(t["audio_seconds"] for t in totals), 2),
        "images": sum(t["images"] for t in totals),
        "per_app": totals,
        "top_conversations": [
            {
                "conversation_id": conv_id,
                "platform": platform,
                "app": app,
                "external_id": external_id,
                "prompt_tokens": int(p or 0),
                "completion_tokens": int(c or 0),
                **_media_fields(by_conversation.get(conv_id)),
            }
            for conv_id, platform, app, external_id, p, c in top
        ],
        # The conversations with the most voice, then pictures (they may have cost no tokens:
        # a transcribed question answered from the FAQ).
        "top_media_conversations": [
            {
                "conversation_id": conv_id,
                "platform": platform,
                "app": app,
                "external_id": external_id,
                **_media_fields(value),
            }
            for (conv_id, platform, app, external_id), value in sorted(
                media.items(), key=lambda item: item[1], reverse=True
            )[:TOP_CONVERSATIONS]
        ],
    }


def _media(session: Session, since: datetime) -> dict[tuple[int, str, str, str], tuple[float, int]]:
    """(conversation id, platform, app, external id) -> (audio seconds, pictures) since `since`."""
    rows = session.execute(
        select(
            col(Conversation.id),
            col(Conversation.platform),
            col(Conversation.app),
            col(Conversation.external_id),
            col(MediaUsage.kind),
            func.sum(MediaUsage.amount),
        )
        .select_from(MediaUsage)
        .join(Conversation, col(Conversation.id) == col(MediaUsage.conversation_id))
        .where(col(MediaUsage.created_at) >= since)
        .group_by(
            col(Conversation.id),
            col(Conversation.platform),
            col(Conversation.app),
            col(Conversation.external_id),
            col(MediaUsage.kind),
        )
    ).all()
    found: dict[tuple[int, str, str, str], tuple[float, int]] = {}
    for conv_id, platform, app, external_id, kind, amount in rows:
        seconds, pictures = found.get((conv_id, platform, app, external_id), (0.0, 0))
        if kind == AUDIO:
            seconds += float(amount or 0)
        elif kind == IMAGE:
            pictures += int(amount or 0)
        found[(conv_id, platform, app, external_id)] = (seconds, pictures)
    return found


def _app_entry(platform: str, app: str) -> dict[str, Any]:
    return {
        "platform": platform,
        "app": app,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "calls": 0,
        "audio_seconds": 0.0,
        "images": 0,
    }


def _media_fields(value: tuple[float, int] | None) -> dict[str, Any]:
    seconds, pictures = value or (0.0, 0)
    return {"audio_seconds": round(seconds, 2), "images": pictures}
