"""A model dying mid-answer, seen from the web chat: vLLM streams two pieces and its
connection drops, DashScope answers, and the SSE client (read the way the chat page reads
it) ends up with DashScope's text alone; the stored answer is DashScope's."""

from __future__ import annotations

from sqlmodel import Session, select

from bot.db.engine import get_engine
from bot.db.models import Message
from tests.integration.webchat import as_user, sse_events

HALF = "vLLM的回答写到一半"
ANSWER = "您好，这是备用模型的完整回答。"


def _screen(events: list[tuple[str, dict]]) -> str:
    """What index.html shows from the deltas: appended, and cleared by `reset`."""
    shown = ""
    for kind, data in events:
        if kind == "delta":
            shown += data["text"]
        elif kind == "reset":
            shown = ""
    return shown


async def test_fallback_mid_answer_shows_only_the_fallbacks_answer(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    settings = make_settings(**fakes.sections(wecom_app))
    client = await make_client(settings)
    celery_worker(settings)
    fakes.vllm.script(HALF)
    fakes.vllm.drop_after_chunks = 3  # the role chunk, two pieces of text, then the cut
    # Pieces further apart than the web channel's delta throttle: each is its own delta.
    fakes.vllm.chunk_delay_s = 0.15
    fakes.dashscope.script(ANSWER)

    resp = await client.post(
        "/api/chat",
        json={**await as_user(client, "web-fallback"), "text": "你好"},
        headers={"Accept": "text/event-stream"},
    )
    events = sse_events(await resp.text())
    kinds = [kind for kind, _ in events]
    assert "reset" in kinds, kinds
    before = events[: kinds.index("reset")]
    assert "".join(d["text"] for k, d in before if k == "delta") == HALF[:8]  # two pieces
    assert _screen(events) == ANSWER
    assert [d["text"] for k, d in events if k == "message"] == [ANSWER]
    assert kinds[-1] == "done"

    with Session(get_engine(settings.core.effective_database_url())) as s:
        stored = [m.text for m in s.exec(select(Message).where(Message.direction == "out"))]
    assert stored == [ANSWER]
