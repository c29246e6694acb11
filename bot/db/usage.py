"""Token accounting: what each answer (and memory summary) cost, per conversation.

One `TokenUsage` row per answer message (unique with its purpose, so a redelivered task
records nothing twice) and the Prometheus counter `bot_llm_tokens_total{backend,kind}`,
counted only when the row is new. `report` feeds the admin route `GET /api/usage`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from bot import metrics
from bot.db.models import Conversation, TokenUsage
from bot.db.records import insert_new

TOP_CONVERSATIONS = 10


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
    if prompt_tokens <= 0 and completion_tokens <= 0:
        return False  # no model call (FAQ, rule, degraded) or a backend that reports nothing
    row = TokenUsage(
        conversation_id=conversation_id,
        message_id=message_id,
        purpose=purpose,
        backend=backend,
        prompt_tokens=max(0, prompt_tokens),
        completion_tokens=max(0, completion_tokens),
    )
    if insert_new(session, row, ("message_id", "purpose")) is None:
        return False  # recorded before a crash; the retry must not count it again
    label = backend or "unknown"
    metrics.LLM_TOKENS.labels(label, "prompt").inc(row.prompt_tokens)
    metrics.LLM_TOKENS.labels(label, "completion").inc(row.completion_tokens)
    return True


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
    totals = [
        {
            "platform": platform,
            "app": app,
            "prompt_tokens": int(p or 0),
            "completion_tokens": int(c or 0),
            "calls": int(n or 0),
        }
        for platform, app, p, c, n in per_app
    ]
    return {
        "days": days,
        "since": since.isoformat(),
        "prompt_tokens": sum(t["prompt_tokens"] for t in totals),
        "completion_tokens": sum(t["completion_tokens"] for t in totals),
        "per_app": totals,
        "top_conversations": [
            {
                "conversation_id": conv_id,
                "platform": platform,
                "app": app,
                "external_id": external_id,
                "prompt_tokens": int(p or 0),
                "completion_tokens": int(c or 0),
            }
            for conv_id, platform, app, external_id, p, c in top
        ],
    }
