"""Media usage: seconds of voice transcribed and pictures shown to the vision model, counted
per conversation (MediaUsage) and reported by GET /api/usage, through the real webhook,
Celery worker, ffmpeg and fake ASR and vision servers."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import Session, select

from adapters.wecom import simulate as wecom_simulate
from bot.db.engine import get_engine
from bot.db.models import MediaUsage
from tests.fakes.asr_server import AsrFakeState, asr_app
from tests.fakes.base import serve
from tests.integration import speech
from tests.integration.conftest import wait_for
from tests.integration.pictures import error_code_picture

TOKEN = "media-usage-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUESTION = "你好，我的订单什么时候发货？"


@pytest.fixture(scope="module")
def amr(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, float]:
    folder = tmp_path_factory.mktemp("speech")
    wav = speech.spoken_wav(QUESTION, folder / "question.wav")
    return speech.amr(wav, folder / "question.amr").read_bytes(), speech.seconds_of(wav)


@pytest.fixture
def asr() -> Iterator[tuple[AsrFakeState, str]]:
    state = AsrFakeState(model="whisper-test")
    with serve(asr_app(state)) as url:
        yield state, url


async def _send(client: Any, wecom_app: Any, **fields: Any) -> dict[str, Any]:
    now = int(time.time())
    inner = {
        "ToUserName": wecom_app.corp_id,
        "CreateTime": now,
        "AgentID": int(wecom_app.agent_id),
        "MsgId": str(secrets.randbelow(10**18) + 10**18),
        **fields,
    }
    query, body = wecom_simulate.build_post(
        inner,
        corp_id=wecom_app.corp_id,
        agent_id=wecom_app.agent_id,
        token=wecom_app.token,
        aes_key=wecom_app.aes_key,
        timestamp=str(now),
        nonce=str(secrets.randbelow(10**9)),
        random_prefix=os.urandom(16),
    )
    resp = await client.post("/webhooks/wecom", params=query, data=body)
    assert resp.status == 200, await resp.text()
    return inner


async def test_audio_seconds_and_pictures_are_counted_per_conversation_and_reported(
    make_settings, make_client, celery_worker, fakes, wecom_app, asr, amr
) -> None:
    voice, seconds = amr
    state, url = asr
    state.say(QUESTION)
    state.say(QUESTION)
    fakes.wecom.add_media("VOICE_1", voice, "voice/amr")
    fakes.wecom.add_media("PIC_1", error_code_picture("E-1", size=(400, 200)), "image/png")
    fakes.wecom.add_media("PIC_2", error_code_picture("E-2", size=(400, 200)), "image/png")
    fakes.vllm.vision = True
    sections = fakes.sections(wecom_app)
    sections["vllm"]["vision"] = True
    asr_section = {"base_url": f"{url}/v1", "model": "whisper-test", "timeout_s": 3}
    settings = make_settings(**sections, asr=asr_section, core={"admin_token": TOKEN})
    client = await make_client(settings)
    celery_worker(settings)

    # zhangsan: a voice message, then two pictures; lisi: one voice message.
    await _send(client, wecom_app, FromUserName="zhangsan", MsgType="voice", MediaId="VOICE_1",
                Format="amr")  # fmt: skip
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    await _send(client, wecom_app, FromUserName="zhangsan", MsgType="image",
                PicUrl="https://wework.qpic.cn/x", MediaId="PIC_1")  # fmt: skip
    await wait_for(lambda: len(fakes.wecom.sent) == 2)
    await _send(client, wecom_app, FromUserName="zhangsan", MsgType="image",
                PicUrl="https://wework.qpic.cn/x", MediaId="PIC_2")  # fmt: skip
    await wait_for(lambda: len(fakes.wecom.sent) == 3)
    replayed = await _send(client, wecom_app, FromUserName="lisi", MsgType="voice",
                           MediaId="VOICE_1", Format="amr")  # fmt: skip
    await wait_for(lambda: len(fakes.wecom.sent) == 4)
    # The same message delivered again is deduplicated at the door: counted once.
    query, body = wecom_simulate.build_post(
        replayed,
        corp_id=wecom_app.corp_id,
        agent_id=wecom_app.agent_id,
        token=wecom_app.token,
        aes_key=wecom_app.aes_key,
        timestamp=str(replayed["CreateTime"]),
        nonce="1",
        random_prefix=os.urandom(16),
    )
    assert (await client.post("/webhooks/wecom", params=query, data=body)).status == 200

    heard = [round(r.seconds, 2) for r in state.received]
    assert len(heard) == 2
    assert abs(heard[0] - seconds) < 0.1
    with Session(get_engine(settings.core.effective_database_url())) as s:
        rows = s.exec(select(MediaUsage).order_by(MediaUsage.id)).all()  # type: ignore[arg-type]
    assert [(r.kind, r.amount) for r in rows] == [
        ("audio", heard[0]),
        ("image", 1),
        ("image", 1),
        ("audio", heard[1]),
    ]

    resp = await client.get("/api/usage", params={"days": "1"}, headers=AUTH)
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert report["audio_seconds"] == round(sum(heard), 2)
    assert report["images"] == 2
    (app,) = report["per_app"]
    assert (app["platform"], app["audio_seconds"], app["images"]) == (
        "wecom",
        round(sum(heard), 2),
        2,
    )
    media = {c["external_id"]: c for c in report["top_media_conversations"]}
    assert (media["zhangsan"]["audio_seconds"], media["zhangsan"]["images"]) == (heard[0], 2)
    assert (media["lisi"]["audio_seconds"], media["lisi"]["images"]) == (heard[1], 0)
    assert [c["external_id"] for c in report["top_media_conversations"]] == ["zhangsan", "lisi"]
    tokens = {c["external_id"]: c for c in report["top_conversations"]}
    assert tokens["zhangsan"]["images"] == 2  # the token list shows the media too
