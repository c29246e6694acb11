"""Token accounting: per answer in the database, in /metrics, and in GET /api/usage."""

from __future__ import annotations

from sqlmodel import Session, select

from bot.db.engine import get_engine
from bot.db.models import Message, TokenUsage
from tests.fakes.openai_server import prompt_tokens
from tests.integration.webchat import as_user

TOKEN = "usage-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _counter(metrics: str, backend: str, kind: str) -> float:
    prefix = f'bot_llm_tokens_total{{backend="{backend}",kind="{kind}"}} '
    for line in metrics.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return 0.0


async def test_tokens_are_recorded_per_answer_and_reported(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    settings = make_settings(**fakes.sections(wecom_app), core={"admin_token": TOKEN})
    client = await make_client(settings)
    celery_worker(settings)
    before = await (await client.get("/metrics")).text()
    for user, text in [("spender", "怎么退货"), ("spender", "运费谁出"), ("thrifty", "你好")]:
        resp = await client.post("/api/chat", json={**await as_user(client, user), "text": text})
        assert resp.status == 200, await resp.text()
    requests = [r.json["messages"] for r in fakes.vllm.matching("/chat/completions")]
    assert len(requests) == 3
    # What the fake model billed: one token per character (tests/fakes/openai_server.py).
    billed = [(prompt_tokens(m), len("ANSWER: " + m[-1]["content"])) for m in requests]

    engine = get_engine(settings.core.effective_database_url())
    with Session(engine) as s:
        rows = s.exec(select(TokenUsage).order_by(TokenUsage.id)).all()  # type: ignore[arg-type]
        answers = {m.id: m.text for m in s.exec(select(Message).where(Message.direction == "out"))}
    assert [(r.prompt_tokens, r.completion_tokens) for r in rows] == billed
    assert {(r.backend, r.purpose) for r in rows} == {("vllm", "answer")}
    assert [answers[r.message_id] for r in rows] == [
        "ANSWER: 怎么退货",
        "ANSWER: 运费谁出",
        "ANSWER: 你好",
    ]

    after = await (await client.get("/metrics")).text()
    total_prompt = sum(p for p, _ in billed)
    total_completion = sum(c for _, c in billed)
    assert _counter(after, "vllm", "prompt") - _counter(before, "vllm", "prompt") == total_prompt
    assert (
        _counter(after, "vllm", "completion") - _counter(before, "vllm", "completion")
        == total_completion
    )

    resp = await client.get("/api/usage", params={"days": "1"}, headers=AUTH)
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert report["prompt_tokens"] == total_prompt
    assert report["completion_tokens"] == total_completion
    assert report["per_app"] == [
        {
            "platform": "web",
            "app": "default",
            "prompt_tokens": total_prompt,
            "completion_tokens": total_completion,
            "calls": 3,
            "audio_seconds": 0.0,
            "images": 0,
        }
    ]
    top = report["top_conversations"]
    assert [c["external_id"] for c in top] == ["spender", "thrifty"]
    assert top[0]["prompt_tokens"] == billed[0][0] + billed[1][0]


async def test_usage_route_needs_the_token_and_a_valid_range(make_settings, make_client) -> None:
    client = await make_client(make_settings(core={"admin_token": TOKEN}))
    assert (await client.get("/api/usage")).status == 401
    for bad in ("0", "abc", "400"):
        resp = await client.get("/api/usage", params={"days": bad}, headers=AUTH)
        assert resp.status == 400
        assert "days" in (await resp.json())["error"]
    resp = await client.get("/api/usage", headers=AUTH)
    assert resp.status == 200
    assert (await resp.json())["per_app"] == []
