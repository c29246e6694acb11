"""Voice to text, end to end: a signed, encrypted webhook → Redis/Celery → the platform's media
API (fake) → ffmpeg → the OpenAI-compatible transcription server (fake) → the model → the reply.

The speech is real: espeak-ng says a sentence, encoded as the platforms send it (AMR-NB from
WeCom, Opus in Ogg from Feishu). The fake ASR server reads the multipart body as vLLM does
and records the WAV that reached it, so the tests assert its format and duration; it cannot
hear, so it answers the sentence the test queued.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from adapters.feishu import simulate as feishu_simulate
from adapters.wecom import simulate as wecom_simulate
from bot.db.engine import get_engine
from bot.db.models import Message
from bot.db.records import VOICE_MARK
from bot.pipeline import autoreply, voice
from tests.fakes.asr_server import AsrFakeState, asr_app
from tests.fakes.base import serve
from tests.fakes.feishu_api import FeishuFakeState, make_feishu_app
from tests.fakes.paraformer_ws import ParaformerFakeState, paraformer_app
from tests.integration import speech
from tests.integration.conftest import wait_for

QUESTION = "你好，我的订单什么时候发货？"
FEISHU_TOKEN = "feishu-voice-token"


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The question said by espeak-ng, as WAV, AMR and Opus/Ogg, and a long one."""
    folder = tmp_path_factory.mktemp("speech")
    wav = speech.spoken_wav(QUESTION, folder / "question.wav")
    long_wav = speech.spoken_wav(QUESTION * 3, folder / "long.wav")
    return {
        "seconds": speech.seconds_of(wav),
        "amr": speech.amr(wav, folder / "question.amr").read_bytes(),
        "ogg": speech.opus_ogg(wav, folder / "question.ogg").read_bytes(),
        "long_amr": speech.amr(long_wav, folder / "long.amr").read_bytes(),
        "long_seconds": speech.seconds_of(long_wav),
    }


@pytest.fixture
def asr() -> Iterator[tuple[AsrFakeState, str]]:
    state = AsrFakeState(model="whisper-test")
    with serve(asr_app(state)) as url:
        yield state, url


def _asr_section(url: str, **more: Any) -> dict[str, Any]:
    return {
        "base_url": f"{url}/v1",
        "model": "whisper-test",
        "api_key": "sk-asr",
        "timeout_s": 3,
        **more,
    }


def _wecom_post(wecom_app: Any, fields: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    now = int(time.time())
    inner = {
        "ToUserName": wecom_app.corp_id,
        "CreateTime": now,
        "AgentID": int(wecom_app.agent_id),
        "MsgId": str(secrets.randbelow(10**18) + 10**18),
        **fields,
    }
    return wecom_simulate.build_post(
        inner,
        corp_id=wecom_app.corp_id,
        agent_id=wecom_app.agent_id,
        token=wecom_app.token,
        aes_key=wecom_app.aes_key,
        timestamp=str(now),
        nonce=str(secrets.randbelow(10**9)),
        random_prefix=os.urandom(16),
    )


async def _send_voice(client: Any, wecom_app: Any, user: str, media_id: str) -> None:
    fields = {"FromUserName": user, "MsgType": "voice", "MediaId": media_id, "Format": "amr"}
    query, body = _wecom_post(wecom_app, fields)
    resp = await client.post("/webhooks/wecom", params=query, data=body)
    assert resp.status == 200, await resp.text()


async def _send_text(client: Any, wecom_app: Any, user: str, text: str) -> None:
    fields = {"FromUserName": user, "MsgType": "text", "Content": text}
    query, body = _wecom_post(wecom_app, fields)
    resp = await client.post("/webhooks/wecom", params=query, data=body)
    assert resp.status == 200, await resp.text()


def _inbound_texts(settings: Any) -> list[str]:
    with Session(get_engine(settings.core.effective_database_url())) as s:
        rows = s.exec(select(Message).where(Message.direction == "in")).all()
        return [row.text for row in rows]


async def test_wecom_voice_is_transcribed_and_answered(
    make_settings, make_client, celery_worker, fakes, wecom_app, asr, spoken
) -> None:
    state, url = asr
    state.say(QUESTION)
    fakes.wecom.add_media("VOICE_1", spoken["amr"], "voice/amr")
    settings = make_settings(**fakes.sections(wecom_app), asr=_asr_section(url))
    client = await make_client(settings)
    celery_worker(settings)

    await _send_voice(client, wecom_app, "zhangsan", "VOICE_1")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)

    assert [r.query["media_id"] for r in fakes.wecom.matching("/cgi-bin/media/get")] == ["VOICE_1"]
    (got,) = state.received
    # The AMR became 16 kHz mono 16-bit WAV of the same speech (AMR frames are 20 ms).
    assert (got.sample_rate, got.channels, got.sample_width) == (16000, 1, 2)
    assert abs(got.seconds - spoken["seconds"]) < 0.1, (got.seconds, spoken["seconds"])
    assert got.audio[:4] == b"RIFF"
    assert got.audio[8:12] == b"WAVE"
    assert (got.model, got.language, got.response_format) == ("whisper-test", "zh", "json")
    assert (got.filename, got.content_type) == ("voice.wav", "audio/wav")
    assert got.authorization == "Bearer sk-asr"
    # The transcript is the question the model answered, and the reply answers it.
    asked = fakes.vllm.matching("/chat/completions")[0].json
    assert asked["messages"][-1] == {"role": "user", "content": QUESTION}
    assert fakes.wecom.sent[0]["content"] == f"ANSWER: {QUESTION}"
    # Stored marked as voice, for the person who takes over in the console.
    assert _inbound_texts(settings) == [VOICE_MARK + QUESTION]


async def test_voice_that_cannot_be_transcribed_gets_a_clear_answer(
    make_settings, make_client, celery_worker, fakes, wecom_app, asr, spoken, tmp_path
) -> None:
    state, url = asr
    archive = tmp_path / "voice.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("voice.amr", "not audio")
    fakes.wecom.add_media("LONG", spoken["long_amr"], "voice/amr")
    fakes.wecom.add_media("CUT", b"#!AMR\n" + os.urandom(40), "voice/amr")  # header, then noise
    fakes.wecom.add_media("ZIP", archive.read_bytes(), "voice/amr")
    fakes.wecom.add_media("BIG", spoken["amr"] * 20, "voice/amr")
    max_seconds = round(spoken["seconds"] + 1)
    assert spoken["long_seconds"] > max_seconds + 2
    sections = fakes.sections(wecom_app)
    sections["wecom"].update(media_max_bytes=len(spoken["amr"]) * 10)
    settings = make_settings(**sections, asr=_asr_section(url, max_seconds=max_seconds))
    client = await make_client(settings)
    celery_worker(settings)
    cases = {
        "u_long": ("LONG", voice.too_long(max_seconds)),
        "u_cut": ("CUT", voice.UNPLAYABLE),
        "u_zip": ("ZIP", voice.UNPLAYABLE),
        "u_big": ("BIG", voice.TOO_LARGE),
        "u_gone": ("NO_SUCH_MEDIA", voice.NOT_NOW),  # media/get answers 40007
    }
    for user, (media_id, _) in cases.items():
        await _send_voice(client, wecom_app, user, media_id)
    await wait_for(lambda: len(fakes.wecom.sent) == len(cases))

    answers = {m["touser"]: m["content"] for m in fakes.wecom.sent}
    assert answers == {user: answer for user, (_, answer) in cases.items()}
    assert f"{max_seconds} 秒" in answers["u_long"]
    assert state.received == []  # nothing that could not be decoded reached the server
    assert fakes.vllm.matching("/chat/completions") == []  # no model guessed at them


async def test_asr_errors_get_a_polite_answer_and_a_slow_server_blocks_no_one(
    make_settings, make_client, celery_worker, fakes, wecom_app, asr, spoken
) -> None:
    state, url = asr
    fakes.wecom.add_media("VOICE", spoken["amr"], "voice/amr")
    settings = make_settings(**fakes.sections(wecom_app), asr=_asr_section(url, timeout_s=3))
    client = await make_client(settings)
    celery_worker(settings)

    # 429, then 503: one try each, a polite answer, no model call.
    for n, status in enumerate((429, 503), start=1):
        state.fail_next(status=status)
        await _send_voice(client, wecom_app, f"u_{status}", "VOICE")
        await wait_for(lambda n=n: len(fakes.wecom.sent) == n)
    # Silence recognised as nothing: asked to say it again.
    state.say("")
    await _send_voice(client, wecom_app, "u_silent", "VOICE")
    await wait_for(lambda: len(fakes.wecom.sent) == 3)
    # A server slower than ASR_TIMEOUT_S: meanwhile another customer's text is answered.
    state.fail_next(status=200, delay_s=8)
    started = time.monotonic()
    await _send_voice(client, wecom_app, "u_slow", "VOICE")
    await wait_for(lambda: len(state.requests) == 4)  # the slow call is under way
    await _send_text(client, wecom_app, "u_text", "在吗")
    await wait_for(lambda: len(fakes.wecom.sent) == 4)
    answered_text_s = time.monotonic() - started
    await wait_for(lambda: len(fakes.wecom.sent) == 5)
    sent = [(m["touser"], m["content"]) for m in fakes.wecom.sent]
    assert sent == [
        ("u_429", voice.NOT_NOW),
        ("u_503", voice.NOT_NOW),
        ("u_silent", voice.NOT_HEARD),
        ("u_text", "ANSWER: 在吗"),
        ("u_slow", voice.NOT_NOW),
    ]
    # The text was answered while the recognition call was still waiting (ASR_TIMEOUT_S 3),
    # and the slow call was given up at its timeout, not at the server's 8 s.
    assert answered_text_s < 3
    assert time.monotonic() - started < 7
    asked = [r.json["messages"][-1]["content"] for r in fakes.vllm.matching("/chat/completions")]
    assert asked == ["在吗"]


async def test_wrong_asr_model_is_a_polite_answer_and_speech_off_keeps_the_old_one(
    make_settings, make_client, celery_worker, fakes, wecom_app, asr, spoken
) -> None:
    state, url = asr
    fakes.wecom.add_media("VOICE", spoken["amr"], "voice/amr")
    settings = make_settings(**fakes.sections(wecom_app), asr=_asr_section(url, model="nope"))
    client = await make_client(settings)
    celery_worker(settings)
    await _send_voice(client, wecom_app, "u_model", "VOICE")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    assert fakes.wecom.sent[0]["content"] == voice.NOT_NOW
    assert len(state.requests) == 1
    assert state.received == []
    assert autoreply.unsupported_reply("voice") == autoreply.VOICE_REPLY


@pytest.fixture
def feishu_api() -> Iterator[tuple[FeishuFakeState, str]]:
    state = FeishuFakeState(app_id="cli_voice", app_secret=secrets.token_urlsafe(16))
    with serve(make_feishu_app(state)) as url:
        yield state, url


async def test_feishu_voice_opus_is_transcribed_and_answered(
    make_settings, make_client, celery_worker, fakes, wecom_app, asr, spoken, feishu_api
) -> None:
    state, url = feishu_api
    asr_state, asr_url = asr
    asr_state.say(QUESTION)
    state.add_resource("om_voice_1", "file_v3_voice", spoken["ogg"], "audio/ogg")
    sections = fakes.sections(wecom_app)
    sections["feishu"] = {
        "app_id": state.app_id,
        "app_secret": state.app_secret,
        "verification_token": FEISHU_TOKEN,
        "api_base": url,
        "bot_open_id": "ou_bot",
    }
    settings = make_settings(**sections, asr=_asr_section(asr_url))
    client = await make_client(settings)
    celery_worker(settings)
    now = int(time.time())
    event = feishu_simulate.text_event(
        "", user_open_id="ou_lisi", message_id="om_voice_1", chat_id="oc_p2p",
        create_time_ms=now * 1000,
    )  # fmt: skip
    content = {"file_key": "file_v3_voice", "duration": int(spoken["seconds"] * 1000)}
    event["message"].update(message_type="audio", content=json.dumps(content))
    payload = feishu_simulate.envelope(
        "im.message.receive_v1", event, app_id=state.app_id, verification_token=FEISHU_TOKEN,
        event_id=secrets.token_hex(16), create_time_ms=now * 1000,
    )  # fmt: skip
    resp = await client.post("/webhooks/feishu", json=payload)
    assert resp.status == 200, await resp.text()
    await wait_for(lambda: len(state.sent) == 1)

    (fetch,) = state.matching("/open-apis/im/v1/messages/om_voice_1/resources/file_v3_voice")
    assert fetch.query == {"type": "file"}
    (got,) = asr_state.received
    assert (got.sample_rate, got.channels) == (16000, 1)
    assert abs(got.seconds - spoken["seconds"]) < 0.3, (got.seconds, spoken["seconds"])
    assert state.sent[0]["reply_to"] == "om_voice_1"
    assert state.sent[0]["text"] == f"ANSWER: {QUESTION}"
    assert _inbound_texts(settings) == [VOICE_MARK + QUESTION]


def test_speech_helpers_make_what_the_platforms_send(
    spoken: dict[str, Any], tmp_path: Path
) -> None:
    assert spoken["amr"].startswith(b"#!AMR\n")
    assert spoken["ogg"].startswith(b"OggS")
    assert b"OpusHead" in spoken["ogg"][:64]
    assert 2 < spoken["seconds"] < spoken["long_seconds"]


async def test_doctor_checks_ffmpeg_and_the_transcription_server(
    make_settings, asr, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bot.doctor import voice as doctor_voice
    from bot.doctor.result import Status

    state, url = asr
    off = await doctor_voice.check_speech(make_settings())
    assert off.status is Status.SKIP
    good = await doctor_voice.check_speech(make_settings(asr=_asr_section(url)))
    assert good.status is Status.OK, good.line()
    (got,) = state.received  # a real WAV went out
    assert (got.sample_rate, got.channels, got.seconds) == (16000, 1, 0.5)
    wrong = await doctor_voice.check_speech(make_settings(asr=_asr_section(url, model="nope")))
    assert wrong.status is Status.FAIL
    assert "ASR_MODEL" in wrong.fix_en
    assert "does not exist" in wrong.detail
    state.fail_next(status=503)
    down = await doctor_voice.check_speech(make_settings(asr=_asr_section(url)))
    assert down.status is Status.FAIL
    assert "HTTP 503" in down.detail
    monkeypatch.setenv("PATH", str(tmp_path))  # a host without ffmpeg
    missing = await doctor_voice.check_speech(make_settings(asr=_asr_section(url)))
    assert missing.status is Status.FAIL
    assert "ffmpeg" in missing.detail
    assert "apt-get install ffmpeg" in missing.fix_en


async def test_bot_simulate_wecom_voice_round_trip_through_the_sandbox(
    make_settings, celery_worker, fakes, wecom_app, asr, spoken, tmp_path, capsys
) -> None:
    from aiohttp.test_utils import TestServer

    from bot.cli import embedded, simulate
    from bot.web.app import create_app

    state, url = asr
    state.say(QUESTION)
    port = embedded.free_port()
    base = f"http://127.0.0.1:{port}"
    sections = fakes.sections(wecom_app)
    sections["wecom"]["api_base"] = f"{base}/sandbox/wecom"  # `bot up` trial mode's stand-in
    settings = make_settings(**sections, asr=_asr_section(url), core={"sandbox": True})
    server = TestServer(create_app(settings), port=port)
    await server.start_server()
    try:
        celery_worker(settings)
        recording = tmp_path / "question.amr"
        recording.write_bytes(spoken["amr"])
        code = await simulate.wecom(base, settings, "lisi", "", 20.0, voice=recording)
        missing = await simulate.wecom(base, settings, "lisi", "", 5.0, voice=tmp_path / "no.amr")
    finally:
        await server.close()
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"message/send to lisi: ANSWER: {QUESTION}" in out
    (got,) = state.received
    assert abs(got.seconds - spoken["seconds"]) < 0.1
    assert missing == 1
    assert "cannot read" in err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["web", "--voice", "q.amr"], "--voice works with `bot simulate` wecom,"),
        # The AI bot gets WeCom's transcript, never a recording: the words are needed.
        (["wecom_aibot", "--voice", "q.amr"], "never the recording; say the words"),
        (["web", "--image", "p.png"], "--image works with `bot simulate` wecom,"),
        (["wecom", "--voice", "q.amr", "--image", "p.png"], "send one of --image FILE or --voice"),
        (["wecom"], "say what to send: a text, --image FILE or --voice FILE"),
    ],
)
def test_bot_simulate_voice_user_errors_are_one_line(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli.main import main

    assert main(["simulate", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert said in err


@pytest.fixture
def paraformer() -> Iterator[tuple[ParaformerFakeState, str]]:
    state = ParaformerFakeState(api_key="sk-ds-voice")
    with serve(paraformer_app(state)) as url:
        yield state, "ws" + url.removeprefix("http") + "/api-ws/v1/inference"


def _paraformer_section(url: str, **more: Any) -> dict[str, Any]:
    return {
        "backend": "dashscope",
        "base_url": url,
        "model": "paraformer-realtime-v2",
        "api_key": "sk-ds-voice",
        "timeout_s": 3,
        **more,
    }


async def test_wecom_voice_through_dashscope_paraformer(
    make_settings, make_client, celery_worker, fakes, wecom_app, paraformer, spoken
) -> None:
    state, url = paraformer
    state.say(QUESTION)
    fakes.wecom.add_media("VOICE_DS", spoken["amr"], "voice/amr")
    settings = make_settings(**fakes.sections(wecom_app), asr=_paraformer_section(url))
    client = await make_client(settings)
    celery_worker(settings)

    await _send_voice(client, wecom_app, "wangwu", "VOICE_DS")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)

    (task,) = state.tasks
    payload = task.run_task["payload"]
    assert payload["model"] == "paraformer-realtime-v2"
    assert payload["parameters"] == {
        "format": "pcm",
        "sample_rate": 16000,
        "language_hints": ["zh"],
    }
    assert task.finished
    assert abs(task.seconds - spoken["seconds"]) < 0.1, (task.seconds, spoken["seconds"])
    assert fakes.wecom.sent[0]["content"] == f"ANSWER: {QUESTION}"
    assert _inbound_texts(settings) == [VOICE_MARK + QUESTION]


async def test_paraformer_errors_map_to_busy_or_refused(
    make_settings, paraformer, spoken, tmp_path: Path
) -> None:
    import aiohttp

    from bot.llm import asr, audio, speech

    state, url = paraformer
    source = tmp_path / "q.amr"
    source.write_bytes(spoken["amr"])
    wav = (await audio.to_wav(source, max_seconds=60, timeout_s=10)).wav
    good = make_settings(asr=_paraformer_section(url, timeout_s=1.5)).asr
    cases: list[tuple[str, Any, str]] = [
        (
            "wrong key",
            make_settings(asr=_paraformer_section(url, api_key="sk-nope")).asr,
            asr.REFUSED,
        ),
        (
            "unknown model",
            make_settings(asr=_paraformer_section(url, model="nope")).asr,
            asr.REFUSED,
        ),
    ]
    async with aiohttp.ClientSession() as http:
        for what, cfg, reason in cases:
            with pytest.raises(asr.AsrError) as caught:
                await speech.transcribe(http, cfg, wav)
            assert caught.value.reason == reason, what
        state.fail_with = ("Throttling.RateQuota", "Requests rate limit exceeded")
        with pytest.raises(asr.AsrError) as caught:
            await speech.transcribe(http, good, wav)
        assert caught.value.reason == asr.BUSY
        assert "Throttling" in caught.value.detail
        state.delay_s = 3
        started = time.monotonic()
        with pytest.raises(asr.AsrError) as caught:
            await speech.transcribe(http, good, wav)
        assert caught.value.reason == asr.BUSY
        assert time.monotonic() - started < 2.5
        state.delay_s = 0
        state.say("好的。", "")
        assert await speech.transcribe(http, good, wav) == "好的。"
        assert await speech.transcribe(http, good, wav) == ""  # silence: no words
    # `bot doctor` checks this backend the same way: a short WAV goes through a real task.
    from bot.doctor import voice as doctor_voice
    from bot.doctor.result import Status

    found = await doctor_voice.check_speech(make_settings(asr=_paraformer_section(url)))
    assert found.status is Status.OK, found.line()
    assert url in found.detail
    assert state.tasks[-1].seconds == 0.5


def test_dashscope_backend_settings_are_checked() -> None:
    from bot.errors import ConfigError
    from bot.settings import AsrSettings

    def check(**section: Any) -> None:
        AsrSettings(_env_file=None, **section).check()  # type: ignore[call-arg]

    with pytest.raises(ConfigError, match="ASR_API_KEY"):
        check(**_paraformer_section("wss://x/api-ws/v1/inference", api_key=""))
    with pytest.raises(ConfigError, match="WebSocket ASR_BASE_URL"):
        check(**_paraformer_section("https://x/v1"))
    with pytest.raises(ConfigError, match="http"):
        check(base_url="wss://x", model="m")
    check(**_paraformer_section("wss://x/api-ws/v1/inference"))
    check(base_url="http://whisper:8000/v1", model="m")


async def test_kf_and_official_account_voice_is_transcribed(
    make_settings, make_client, celery_worker, fakes, wecom_app, asr, spoken
) -> None:
    import string

    from adapters.wechat_mp import simulate as wechat_mp_simulate
    from adapters.wecom_kf import simulate as wecom_kf_simulate
    from tests.fakes.wechat_mp_api import WeChatMPFakeState, make_wechat_mp_app
    from tests.fakes.wecom_kf_api import WeComKfFakeState, make_wecom_kf_app

    def aes_key() -> str:
        return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(43))

    state, url = asr
    state.default_text = QUESTION
    kf = WeComKfFakeState(corp_id="wwkfvoice", secret="kf-secret", open_kfid="wkVOICE")
    mp = WeChatMPFakeState(app_id="wxvoice00001", secret="mp-secret")
    kf.media["KF_VOICE"] = (spoken["amr"], "voice/amr")
    mp.media["MP_VOICE"] = (spoken["amr"], "audio/amr")
    kf_key, mp_key = aes_key(), aes_key()
    with serve(make_wecom_kf_app(kf)) as kf_url, serve(make_wechat_mp_app(mp)) as mp_url:
        sections = fakes.sections(wecom_app)
        sections["wecom_kf"] = {
            "WECOM_CORP_ID": kf.corp_id, "secret": kf.secret, "token": "kf-token",
            "aes_key": kf_key, "WECOM_API_BASE": kf_url,
        }  # fmt: skip
        sections["wechat_mp"] = {
            "app_id": mp.app_id, "app_secret": mp.secret, "token": "mp-token",
            "aes_key": mp_key, "WECHAT_API_BASE": mp_url,
        }  # fmt: skip
        settings = make_settings(**sections, asr=_asr_section(url), core={"mp_passive_wait_s": 0})
        client = await make_client(settings)
        celery_worker(settings)

        kf.add(external_userid="wmVoice", msgtype="voice", voice={"media_id": "KF_VOICE"})
        now = int(time.time())
        query, body = wecom_kf_simulate.build_callback(
            corp_id=kf.corp_id, token="kf-token", aes_key=kf_key, sync_token=kf.new_sync_token(),
            open_kfid=kf.open_kfid, create_time=now, timestamp=str(now),
            nonce=secrets.token_hex(4), random_prefix=os.urandom(16),
        )  # fmt: skip
        assert (await client.post("/webhooks/wecom_kf", params=query, data=body)).status == 200
        # An Official Account without 接收语音识别结果: no Recognition field.
        xml = wechat_mp_simulate.message_xml(
            "voice", from_user="oVoice", to_user="gh_voice", create_time=now,
            MediaId="MP_VOICE", Format="amr", MsgId="990001",
        )  # fmt: skip
        query, body = wechat_mp_simulate.safe_post(
            xml, to_user="gh_voice", token="mp-token", aes_key=mp_key, app_id=mp.app_id,
            timestamp=str(now), nonce=secrets.token_hex(4), openid="oVoice",
            random_prefix=os.urandom(16),
        )  # fmt: skip
        assert (await client.post("/webhooks/wechat_mp", params=query, data=body)).status == 200
        await wait_for(lambda: len(kf.sent) == 1 and len(mp.sent) == 1)

    assert kf.sent[0]["content"] == mp.sent[0]["content"] == f"ANSWER: {QUESTION}"
    assert [r.query["media_id"] for r in kf.matching("/cgi-bin/media/get")] == ["KF_VOICE"]
    assert [r.query["media_id"] for r in mp.matching("/cgi-bin/media/get")] == ["MP_VOICE"]
    assert len(state.received) == 2
    assert all(abs(got.seconds - spoken["seconds"]) < 0.1 for got in state.received)


async def test_dingtalk_voice_without_recognition_is_transcribed(
    make_settings, make_client, celery_worker, fakes, wecom_app, asr, spoken
) -> None:
    from adapters.dingtalk import simulate as dingtalk_simulate
    from tests.fakes.dingtalk_api import DingTalkFakeState, make_dingtalk_app

    state, url = asr
    state.say(QUESTION)
    ding = DingTalkFakeState(app_secret=secrets.token_urlsafe(16))
    ding.add_media("DL_VOICE", spoken["ogg"], "audio/ogg")
    with serve(make_dingtalk_app(ding)) as ding_url:
        sections = fakes.sections(wecom_app)
        sections["dingtalk"] = {
            "app_key": ding.app_key, "app_secret": ding.app_secret, "robot_code": ding.robot_code,
            "api_base": ding_url, "oapi_base": "http://127.0.0.1",
        }  # fmt: skip
        settings = make_settings(**sections, asr=_asr_section(url))
        client = await make_client(settings)
        celery_worker(settings)
        body = dingtalk_simulate.robot_body(
            "", msg_id="msgVoice==", staff_id="staff_voice", conversation_id="cidVoice==",
            session_webhook=ding.session_url(ding_url, "voice"),
            create_at_ms=int(time.time() * 1000), robot_code=ding.robot_code,
            msgtype="audio", content={"duration": 4000, "downloadCode": "DL_VOICE"},
        )  # fmt: skip
        headers = dingtalk_simulate.robot_headers(
            app_secret=ding.app_secret, timestamp_ms=int(time.time() * 1000)
        )
        resp = await client.post("/webhooks/dingtalk", data=json.dumps(body), headers=headers)
        assert resp.status == 200, await resp.text()
        await wait_for(lambda: len(ding.sent) == 1)

    codes = [r.json["downloadCode"] for r in ding.matching("/messageFiles/download")]
    assert codes == ["DL_VOICE"]
    (got,) = state.received
    assert abs(got.seconds - spoken["seconds"]) < 0.1
    assert QUESTION in ding.sent[0]["text"]


async def test_saying_start_over_resets_the_conversation(
    make_settings, make_client, celery_worker, fakes, wecom_app, asr, spoken
) -> None:
    from bot.agent import memory

    state, url = asr
    state.say("重新开始")
    fakes.wecom.add_media("VOICE_RESET", spoken["amr"], "voice/amr")
    settings = make_settings(**fakes.sections(wecom_app), asr=_asr_section(url))
    client = await make_client(settings)
    celery_worker(settings)
    await _send_text(client, wecom_app, "u_reset", "我想退货")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    await _send_voice(client, wecom_app, "u_reset", "VOICE_RESET")
    await wait_for(lambda: len(fakes.wecom.sent) == 2)
    assert fakes.wecom.sent[1]["content"] == memory.RESET_TEXT
    await _send_text(client, wecom_app, "u_reset", "你好")
    await wait_for(lambda: len(fakes.wecom.sent) == 3)
    # The spoken command started a new session: the earlier question is not in the history.
    last = fakes.vllm.matching("/chat/completions")[-1].json["messages"]
    assert [m["content"] for m in last if m["role"] == "user"] == ["你好"]


async def test_voice_right_after_text_is_not_swallowed_by_the_burst(
    make_settings, make_client, celery_worker, fakes, wecom_app, asr, spoken
) -> None:
    state, url = asr
    state.say(QUESTION)
    fakes.wecom.add_media("VOICE_BURST", spoken["amr"], "voice/amr")
    settings = make_settings(
        **fakes.sections(wecom_app), asr=_asr_section(url), core={"burst_window_s": 1.0}
    )
    client = await make_client(settings)
    celery_worker(settings)
    # Typed, then said at once, inside one burst window: the voice is a turn of its own.
    await _send_text(client, wecom_app, "u_burst", "你好")
    await _send_voice(client, wecom_app, "u_burst", "VOICE_BURST")
    await wait_for(lambda: len(fakes.wecom.sent) == 2)
    assert [m["content"] for m in fakes.wecom.sent] == ["ANSWER: 你好", f"ANSWER: {QUESTION}"]
    assert len(state.received) == 1


async def test_openai_answers_split_into_chunks_or_too_large(
    make_settings, asr, spoken, tmp_path: Path
) -> None:
    import aiohttp

    from bot.llm import asr as asr_client
    from bot.llm import audio

    state, url = asr
    source = tmp_path / "q.amr"
    source.write_bytes(spoken["amr"])
    wav = (await audio.to_wav(source, max_seconds=60, timeout_s=10)).wav
    cfg = make_settings(asr=_asr_section(url)).asr
    async with aiohttp.ClientSession() as http:
        # A JSON answer arriving a few bytes at a time is read whole.
        state.raw_answer = json.dumps({"text": QUESTION}, ensure_ascii=False).encode()
        state.dribble = 5
        assert await asr_client.transcribe(http, cfg, wav) == QUESTION
        # An answer far larger than any transcript is refused unread.
        state.raw_answer = b'{"text": "' + b"a" * (asr_client.MAX_ANSWER_BYTES + 10) + b'"}'
        state.dribble = 64 * 1024
        with pytest.raises(asr_client.AsrError) as caught:
            await asr_client.transcribe(http, cfg, wav)
        assert caught.value.reason == asr_client.REFUSED
        assert "answer over" in caught.value.detail
