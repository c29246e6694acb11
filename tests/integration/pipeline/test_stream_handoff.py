"""Handoff mid-stream: the model's answer is being typed into a Feishu card or a WeCom
智能机器人 stream when the turn hands the conversation to a person. The card / stream ends
with the handoff notice (not the half answer, and not left "生成中"), once.

Real HTTP with real signatures and AES, real Redis, a real Celery worker; the platforms'
APIs and the models are fakes on loopback.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from adapters.wecom_aibot import simulate
from tests.fakes.base import serve
from tests.fakes.feishu_api import FeishuFakeState, make_feishu_app
from tests.fakes.openai_server import FakeToolCall, ScriptedReply
from tests.integration.conftest import wait_for
from tests.integration.pipeline import test_wecom_aibot_end_to_end as aibot
from tests.integration.pipeline.test_feishu_end_to_end import BOT, KEY, TOKEN, message

NOTICE = "已为您转接人工客服，当前排队第 1 位，请稍候。"  # the only one waiting
LONG = "您好！退货请在订单页点击申请售后，选择退货原因并上传照片，审核通过后寄回商品即可。"
# One low-confidence answer hands over: the answer would not help, the notice replaces it.
HANDOFF = {"low_confidence": 0.99, "low_confidence_turns": 1}


async def test_a_feishu_card_hands_over_mid_stream_with_the_notice(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    state = FeishuFakeState(app_id="cli_e2e", app_secret=secrets.token_urlsafe(16), bot_open_id=BOT)
    with serve(make_feishu_app(state)) as url:
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
        settings = make_settings(**sections, handoff=HANDOFF)
        client = await make_client(settings)
        celery_worker(settings)
        fakes.vllm.chunk_chars = 2
        fakes.vllm.chunk_delay_s = 0.04
        fakes.vllm.script(LONG)
        headers, body = message("量子引力的最新进展", message_id="om_handoff_1")
        resp = await client.post("/webhooks/feishu", data=body, headers=headers)
        assert resp.status == 200
        await wait_for(
            lambda: bool(state.cards) and not any(c.streaming for c in state.cards.values())
        )
        card = next(iter(state.cards.values()))
        texts = [u[2] for u in card.updates]
        # The answer was being typed (the card showed part of it) when the turn handed over.
        assert any(t and LONG.startswith(t) for t in texts), texts
        assert card.text() == NOTICE
        assert texts[-1] == NOTICE
        assert card.closed_at_sequence > card.updates[-1][0]
        # One message: the card; the notice is not a second reply.
        assert [m.get("card_id") for m in state.sent] == [card.card_id]


async def test_a_feishu_card_the_model_hands_over_ends_with_the_notice(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    state = FeishuFakeState(app_id="cli_e2e", app_secret=secrets.token_urlsafe(16), bot_open_id=BOT)
    with serve(make_feishu_app(state)) as url:
        sections: dict[str, Any] = fakes.sections(wecom_app)
        sections["feishu"] = {
            "app_id": state.app_id,
            "app_secret": state.app_secret,
            "verification_token": TOKEN,
            "encrypt_key": KEY,
            "api_base": url,
            "bot_open_id": BOT,
            "streaming_cards": True,
            "card_updates_per_s": 10,
        }
        settings = make_settings(**sections)
        client = await make_client(settings)
        celery_worker(settings)
        fakes.vllm.chunk_chars = 2
        fakes.vllm.chunk_delay_s = 0.04
        fakes.vllm.script(
            ScriptedReply(
                tool_calls=(FakeToolCall("handoff_to_human", {"reason": "客户要求赔偿"}),)
            ),
            "好的，我这就为您转接人工客服，请您稍等片刻。",
        )
        headers, body = message(
            "东西坏了，必须赔偿", message_id="om_handoff_2", group=True, mention=True
        )
        resp = await client.post("/webhooks/feishu", data=body, headers=headers)
        assert resp.status == 200
        await wait_for(
            lambda: bool(state.cards) and not any(c.streaming for c in state.cards.values())
        )
        card = next(iter(state.cards.values()))
        assert card.text() == f"<at id=ou_lisi></at> {NOTICE}"  # the asker, then the notice
        assert [m.get("card_id") for m in state.sent] == [card.card_id]


async def test_an_aibot_stream_hands_over_mid_stream_with_the_notice(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    sections: dict[str, Any] = fakes.sections(wecom_app)
    sections["wecom_aibot"] = {"token": aibot.TOKEN, "aes_key": aibot.KEY}
    settings = make_settings(**sections, handoff=HANDOFF)
    client = await make_client(settings)
    celery_worker(settings)
    fakes.vllm.chunk_chars = 2
    fakes.vllm.chunk_delay_s = 0.06  # about 1.3 s of typing: well inside the 3 s model timeout
    fakes.vllm.script(LONG)
    opened = await aibot.post(client, simulate.text_message("量子引力的最新进展", msgid="ab-ho-1"))
    assert opened is not None
    sid = opened["stream"]["id"]
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = await aibot.post(client, simulate.refresh(sid, msgid=secrets.token_hex(8)))
        assert answer is not None
        seen.append(answer["stream"])
        if seen[-1]["finish"]:
            break
        await asyncio.sleep(0.1)
    assert seen[-1]["finish"], seen[-3:]
    # The answer was being written, then the stream finished with the notice alone.
    assert any(s["content"] and LONG.startswith(s["content"]) for s in seen[:-1]), seen
    assert seen[-1]["content"] == NOTICE
    again = await aibot.post(client, simulate.refresh(sid, msgid=secrets.token_hex(8)))
    assert again is not None
    assert again["stream"] == {"id": sid, "finish": True, "content": NOTICE}
