"""A voice message the bot transcribed shows in the console's conversation view as what was
said, marked as spoken, next to the bot's answer to it (issue 17)."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest
from sqlmodel import Session, select

from adapters.wecom import simulate as wecom_simulate
from bot.db.models import Conversation
from bot.db.records import VOICE_MARK
from tests.fakes.asr_server import AsrFakeState, asr_app
from tests.fakes.base import serve
from tests.integration import speech
from tests.integration.conftest import wait_for

SAID = "我的快递到哪里了"


async def test_the_transcript_is_shown_to_the_person_taking_over(
    console, celery_worker, fakes, wecom_app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    amr = speech.amr(speech.spoken_wav(SAID, tmp_path / "q.wav"), tmp_path / "q.amr")
    fakes.wecom.add_media("VOICE_C", amr.read_bytes(), "voice/amr")
    asr = AsrFakeState(model="whisper-test", default_text=SAID)
    with serve(asr_app(asr)) as url:
        # Sections the console fixture leaves out are read from the environment.
        monkeypatch.setenv("ASR_BASE_URL", f"{url}/v1")
        monkeypatch.setenv("ASR_MODEL", "whisper-test")
        c = await console()
        celery_worker(c.settings)
        now = int(time.time())
        fields = wecom_simulate.voice_fields(
            "VOICE_C", corp_id=wecom_app.corp_id, agent_id=wecom_app.agent_id,
            from_user="zhaoliu", msg_id=str(10**18 + 7), create_time=now,
        )  # fmt: skip
        query, body = wecom_simulate.build_post(
            fields, corp_id=wecom_app.corp_id, agent_id=wecom_app.agent_id,
            token=wecom_app.token, aes_key=wecom_app.aes_key, timestamp=str(now),
            nonce=secrets.token_hex(4), random_prefix=os.urandom(16),
        )  # fmt: skip
        resp = await c.client.post("/webhooks/wecom", params=query, data=body)
        assert resp.status == 200, await resp.text()
        await wait_for(lambda: len(fakes.wecom.sent) == 1)

    c.add("agent1", "agent")
    await c.sign_in("agent1")
    with Session(c.engine) as s:
        conv = s.exec(select(Conversation).where(Conversation.external_id == "zhaoliu")).one()
    page = await (await c.client.get(f"/console/conversations/{conv.id}")).text()
    assert VOICE_MARK + SAID in page
    assert f"ANSWER: {SAID}" in page
    fragment = await (await c.client.get(f"/console/conversations/{conv.id}/messages")).text()
    assert VOICE_MARK + SAID in fragment
