"""👍/👎 on a web chat answer: recorded on the answer's turn record for its own user only;
bad bodies are 400; the dashboard counts them."""

from __future__ import annotations

from sqlmodel import Session, select

from bot.db.engine import get_engine
from bot.db.models import TurnRecord
from tests.integration.webchat import as_user


async def test_a_customer_rates_their_own_answer_only(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    settings = make_settings(**fakes.sections(wecom_app))
    client = await make_client(settings)
    celery_worker(settings)
    me = await as_user(client, "web-rater")
    resp = await client.post("/api/chat", json={**me, "text": "怎么退货"})
    assert resp.status == 200
    event_id = (await resp.json())["event_id"]

    other = await as_user(client, "web-other")
    stolen = await client.post(
        "/api/chat/rating", json={**other, "event_id": event_id, "rating": "down"}
    )
    assert stolen.status == 404
    for bad in ({"event_id": "x", "rating": "up"}, {"event_id": event_id, "rating": "meh"}, {}):
        assert (await client.post("/api/chat/rating", json={**me, **bad})).status == 400
    assert (await client.post("/api/chat/rating", data=b"\xff{")).status == 400

    ok = await client.post("/api/chat/rating", json={**me, "event_id": event_id, "rating": "up"})
    assert ok.status == 200
    again = await client.post(
        "/api/chat/rating", json={**me, "event_id": event_id, "rating": "down"}
    )
    assert again.status == 200  # a change of mind replaces the rating
    with Session(get_engine(settings.core.effective_database_url())) as s:
        (record,) = s.exec(select(TurnRecord)).all()
    assert record.rating == -1
