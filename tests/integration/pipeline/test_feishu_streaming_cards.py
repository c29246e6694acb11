"""Feishu streaming cards end to end: encrypted event → web app → Redis/Celery → agent → a
streaming model → a CardKit card updated as the answer grows, then closed.

Real HTTP with real signatures and AES, real Redis, a real Celery worker; the Feishu API
(with CardKit), vLLM and DashScope are fakes on loopback.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from bot import keys
from tests.fakes.base import serve
from tests.fakes.feishu_api import FeishuFakeState, make_feishu_app
from tests.integration.conftest import wait_for
from tests.integration.pipeline.test_feishu_end_to_end import BOT, KEY, TOKEN, message

# A long answer that trickles in: several card updates before the end.
LONG = "您好！退货请在订单页点击申请售后，选择退货原因并上传照片，审核通过后寄回商品即可。"


@pytest.fixture
def feishu_api() -> Iterator[tuple[FeishuFakeState, str]]:
    state = FeishuFakeState(app_id="cli_e2e", app_secret=secrets.token_urlsafe(16), bot_open_id=BOT)
    with serve(make_feishu_app(state)) as url:
        yield state, url


@pytest.fixture
async def stack(make_settings, make_client, celery_worker, fakes, wecom_app, feishu_api):
    state, url = feishu_api
    sections: dict[str, Any] = fakes.sections(wecom_app)
    sections["feishu"] = {
        "app_id": state.app_id,
        "app_secret": state.app_secret,
        "verification_token": TOKEN,
        "encrypt_key": KEY,
        "api_base": url,
        "bot_open_id": BOT,
        "streaming_cards": True,
        "card_updates_per_s": 5,
    }
    settings = make_settings(**sections)
    client = await make_client(settings)
    celery_worker(settings)
    # A trickling model: 2 characters every 40 ms.
    fakes.vllm.chunk_chars = 2
    fakes.vllm.chunk_delay_s = 0.04
    return client


async def _post(client, headers: dict[str, str], body: bytes) -> None:
    resp = await client.post("/webhooks/feishu", data=body, headers=headers)
    assert resp.status == 200, await resp.text()


def _closed(state: FeishuFakeState) -> bool:
    return bool(state.cards) and all(not c.streaming for c in state.cards.values())


async def test_an_answer_streams_into_one_card_and_closes_it(stack, fakes, feishu_api) -> None:
    state, _ = feishu_api
    fakes.vllm.script(LONG)
    headers, body = message("怎么退货", message_id="om_card_1")
    await _post(stack, headers, body)
    await wait_for(lambda: _closed(state))
    assert len(state.cards) == 1
    card = next(iter(state.cards.values()))
    # Shown once, as the reply to the asker's message, and never as a plain message.
    assert [(m["reply_to"], m["card_id"]) for m in state.sent] == [("om_card_1", card.card_id)]
    # Updated several times as it grew (throttled, ≤ 5/s), with strictly increasing sequences;
    # the last update is the whole answer, and closing came after it.
    seqs = [u[0] for u in card.updates]
    assert len(seqs) >= 3
    assert seqs == sorted(set(seqs))
    texts = [u[2] for u in card.updates]
    assert all(LONG.startswith(t) for t in texts[:-1]), texts
    # The final text is the whole answer, with the sources line every platform gets.
    assert texts[-1] == card.text()
    assert card.text().startswith(LONG)
    assert "参考：" in card.text()
    assert card.closed_at_sequence > seqs[-1]
    gaps = [b[3] - a[3] for a, b in zip(card.updates, card.updates[1:-1], strict=False)]
    assert all(gap >= 0.15 for gap in gaps), gaps  # 5 per second, the final one aside
    # A re-push of the same message changes nothing.
    await _post(stack, *message("怎么退货", message_id="om_card_1"))
    await asyncio.sleep(1.0)
    assert len(state.cards) == 1
    assert len(state.sent) == 1


async def test_a_group_card_mentions_the_asker(stack, fakes, feishu_api) -> None:
    state, _ = feishu_api
    fakes.vllm.script(LONG)
    await _post(stack, *message("怎么退货", message_id="om_card_g", group=True, mention=True))
    await wait_for(lambda: _closed(state))
    card = next(iter(state.cards.values()))
    assert state.sent[0]["reply_to"] == "om_card_g"
    assert card.text().startswith(f"<at id=ou_lisi></at> {LONG}")


async def test_without_the_cardkit_scope_plain_replies_and_remembered(
    stack, fakes, feishu_api, sync_redis, caplog
) -> None:
    state, _ = feishu_api
    state.cardkit_scope = False
    caplog.set_level(logging.WARNING, logger="adapters.feishu.streaming")
    fakes.vllm.script(LONG, "第二个回答")
    await _post(stack, *message("怎么退货", message_id="om_plain_1"))
    await wait_for(lambda: len(state.sent) == 1)
    assert state.sent[0]["msg_type"] != "interactive"
    assert state.sent[0]["text"].startswith(LONG)
    assert sync_redis.exists(keys.feishu_cards_off("default"))
    scope_lines = [r for r in caplog.records if "cardkit:card:write" in r.getMessage()]
    assert len(scope_lines) == 1
    # The next message goes straight to a plain reply: CardKit is not asked again.
    asked = len(state.matching("/open-apis/cardkit/v1/cards"))
    await _post(stack, *message("发票怎么开", message_id="om_plain_2"))
    await wait_for(lambda: len(state.sent) == 2)
    assert state.sent[1]["text"] == "第二个回答"
    assert len(state.matching("/open-apis/cardkit/v1/cards")) == asked == 1
    assert not state.cards


async def test_a_fallback_model_mid_answer_restarts_the_card_text(stack, fakes, feishu_api) -> None:
    state, _ = feishu_api
    fakes.vllm.script(LONG)
    fakes.vllm.drop_after_chunks = 8  # vLLM dies mid-answer: DashScope answers instead
    fakes.dashscope.script("备用模型的完整回答")
    await _post(stack, *message("怎么退货", message_id="om_fb_1"))
    await wait_for(lambda: _closed(state))
    assert len(state.cards) == 1
    card = next(iter(state.cards.values()))
    assert card.text() == "备用模型的完整回答"
    texts = [u[2] for u in card.updates]
    # The primary's half answer was shown, then wiped, never run into the fallback's.
    assert any(t and LONG.startswith(t) for t in texts)
    assert "" in texts[texts.index(next(t for t in texts if t and LONG.startswith(t))) :]
    assert not any(LONG[:4] in t and "备用" in t for t in texts)
    assert [m.get("card_id") for m in state.sent] == [card.card_id]
