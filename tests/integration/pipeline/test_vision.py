"""Pictures to a vision model, end to end: a signed, encrypted webhook → Redis/Celery → the
platform's media API (fake) → Pillow → the OpenAI-compatible vision server (fake) → the reply.

The fake vLLM is a multimodal model here (`vision=True`): it refuses malformed image parts
and records what it received, so each test asserts the bytes, format and prompt that reached
it. Pictures are drawn with Pillow (an error code as text); broken ones are made too.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import string
import time
from typing import Any

import pytest
from PIL import Image

from adapters.feishu import simulate as feishu_simulate
from adapters.wechat_mp import simulate as wechat_mp_simulate
from adapters.wecom import simulate as wecom_simulate
from adapters.wecom_kf import simulate as wecom_kf_simulate
from bot.agent.agent import PICTURE_QUESTION
from bot.llm import images
from bot.pipeline import autoreply
from tests.fakes.base import serve
from tests.fakes.dashscope_server import GENERATION_PATH, MULTIMODAL_PATH, pictures_received
from tests.fakes.feishu_api import FeishuFakeState, make_feishu_app
from tests.fakes.openai_server import FakeToolCall, ScriptedReply, pictures_sent
from tests.fakes.wechat_mp_api import WeChatMPFakeState, make_wechat_mp_app
from tests.fakes.wecom_kf_api import WeComKfFakeState, make_wecom_kf_app
from tests.integration.conftest import wait_for
from tests.integration.pictures import error_code_picture, truncated_png, zip_named_jpg

FEISHU_TOKEN = "feishu-vision-token"


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


async def _send_wecom(client: Any, wecom_app: Any, **fields: Any) -> None:
    query, body = _wecom_post(wecom_app, fields)
    resp = await client.post("/webhooks/wecom", params=query, data=body)
    assert resp.status == 200, await resp.text()


def _vision_sections(fakes: Any, wecom_app: Any, **wecom: Any) -> dict[str, Any]:
    fakes.vllm.vision = True
    sections: dict[str, Any] = fakes.sections(wecom_app)
    sections["vllm"].update(vision=True, image_max_side=640)
    sections["wecom"].update(wecom)
    return sections


def _jpeg_size(data: bytes) -> tuple[int, int]:
    assert images.sniff(data) == "image/jpeg"
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG"
        return img.size


async def test_wecom_picture_is_shown_to_the_vision_model_and_joins_the_conversation(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    picture = error_code_picture("E-1024", size=(2000, 1000))
    fakes.wecom.add_media("MEDIA_1", picture, "image/png")
    settings = make_settings(**_vision_sections(fakes, wecom_app))
    client = await make_client(settings)
    celery_worker(settings)
    # Media kept past BOT_MEDIA_KEEP_S (7 days) are swept when the next picture is fetched.
    folder = settings.core.data_dir / "media" / "wecom" / "default"
    folder.mkdir(parents=True)
    old, recent = folder / "old-0-image.jpg", folder / "recent-0-image.jpg"
    old.write_bytes(b"x")
    recent.write_bytes(b"y")
    eight_days_ago = time.time() - 8 * 86400
    os.utime(old, (eight_days_ago, eight_days_ago))

    await _send_wecom(
        client,
        wecom_app,
        FromUserName="zhangsan",
        MsgType="image",
        PicUrl="https://wework.qpic.cn/x",
        MediaId="MEDIA_1",
    )
    await wait_for(lambda: len(fakes.wecom.sent) == 1)

    fetched = fakes.wecom.matching("/cgi-bin/media/get")
    assert [r.query["media_id"] for r in fetched] == ["MEDIA_1"]
    assert (old.exists(), recent.exists()) == (False, True)
    saved = sorted(p.name for p in folder.iterdir() if p.name != recent.name)
    assert len(saved) == 2  # the picture as fetched, and the JPEG the model was sent
    assert saved[1].endswith(".vision.jpg")
    first = fakes.vllm.matching("/chat/completions")[0].json
    question = first["messages"][-1]
    assert question["role"] == "user"
    assert question["content"][0] == {"type": "text", "text": PICTURE_QUESTION}
    (sent,) = pictures_sent(first["messages"])
    assert _jpeg_size(sent) == (640, 320)  # downscaled, aspect kept, re-encoded as JPEG
    assert fakes.wecom.sent[0]["content"] == f"ANSWER: {PICTURE_QUESTION}"

    # The next question in the same conversation is asked with the same picture; the model
    # reads the code in it and looks it up in the knowledge base, then answers.
    fakes.vllm.script(
        ScriptedReply(tool_calls=(FakeToolCall("search_knowledge", {"query": "退货"}),)),
        "图中的错误码表示退货申请未通过，请按知识库说明重新提交。",
    )
    await _send_wecom(
        client, wecom_app, FromUserName="zhangsan", MsgType="text", Content="这个错误码什么意思？"
    )
    await wait_for(lambda: len(fakes.wecom.sent) == 2)
    asked, after_tool = (r.json for r in fakes.vllm.matching("/chat/completions")[1:3])
    assert asked["messages"][-1]["content"][0] == {"type": "text", "text": "这个错误码什么意思？"}
    assert pictures_sent(asked["messages"][-1:]) == [sent]
    # The earlier picture turn is in the history as text, never as a second copy of it.
    assert len(pictures_sent(asked["messages"])) == 1
    # The step after the tool call still shows the picture, with the knowledge it found.
    assert pictures_sent(after_tool["messages"]) == [sent]
    assert after_tool["messages"][-1]["role"] == "tool"
    assert "退" in after_tool["messages"][-1]["content"]
    assert (
        fakes.wecom.sent[1]["content"] == "图中的错误码表示退货申请未通过，请按知识库说明重新提交。"
    )

    # Another member's question is not asked with zhangsan's picture.
    await _send_wecom(client, wecom_app, FromUserName="lisi", MsgType="text", Content="你好呀")
    await wait_for(lambda: len(fakes.wecom.sent) == 3)
    third = fakes.vllm.matching("/chat/completions")[3].json
    assert pictures_sent(third["messages"]) == []


async def test_wecom_picture_is_answered_by_the_dashscope_vision_model_alone(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    picture = error_code_picture("E-2048", size=(1600, 800))
    fakes.wecom.add_media("MEDIA_DS", picture, "image/png")
    fakes.dashscope.vision_model = "qwen-vl-max"
    sections = fakes.sections(wecom_app)
    del sections["vllm"]  # DashScope alone: its text model, and qwen-vl-max for pictures
    sections["dashscope"]["vision_model"] = "qwen-vl-max"
    settings = make_settings(**sections)
    client = await make_client(settings)
    celery_worker(settings)

    await _send_wecom(client, wecom_app, FromUserName="wangwu", MsgType="image",
                      PicUrl="https://wework.qpic.cn/x", MediaId="MEDIA_DS")  # fmt: skip
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    first = fakes.dashscope.matching(MULTIMODAL_PATH)[0].json
    assert first["model"] == "qwen-vl-max"
    question = first["input"]["messages"][-1]
    assert question["content"][0] == {"text": PICTURE_QUESTION}
    (sent,) = pictures_received(first["input"]["messages"])
    assert _jpeg_size(sent) == (1280, 640)  # VLLM_IMAGE_MAX_SIDE's default holds here too
    assert fakes.wecom.sent[0]["content"] == f"ANSWER: {PICTURE_QUESTION}"

    # The follow-up question goes with the picture, to the vision model again.
    await _send_wecom(
        client, wecom_app, FromUserName="wangwu", MsgType="text", Content="这个错误码什么意思？"
    )
    await wait_for(lambda: len(fakes.wecom.sent) == 2)
    second = fakes.dashscope.matching(MULTIMODAL_PATH)[1].json["input"]["messages"]
    assert second[-1]["content"][0] == {"text": "这个错误码什么意思？"}
    assert pictures_received(second) == [sent]
    assert fakes.dashscope.matching(GENERATION_PATH) == []  # the text model saw no picture


async def test_pictures_that_cannot_be_shown_get_a_clear_answer(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    fakes.wecom.add_media("ZIP", zip_named_jpg(), "image/jpeg")  # a ".jpg" that is a ZIP
    fakes.wecom.add_media("CUT", truncated_png(), "image/png")
    fakes.wecom.add_media("BIG", error_code_picture("E-9", size=(3000, 3000)), "image/png")
    settings = make_settings(**_vision_sections(fakes, wecom_app, media_max_bytes=20_000))
    client = await make_client(settings)
    celery_worker(settings)
    cases = {
        "u_zip": ("ZIP", "not_image"),
        "u_cut": ("CUT", "corrupt"),
        "u_big": ("BIG", "too_large"),
        "u_missing": ("NO_SUCH_MEDIA", "failed"),  # media/get answers 40007
    }
    for user, (media_id, _) in cases.items():
        await _send_wecom(
            client,
            wecom_app,
            FromUserName=user,
            MsgType="image",
            PicUrl="https://wework.qpic.cn/x",
            MediaId=media_id,
        )
    await wait_for(lambda: len(fakes.wecom.sent) == len(cases))
    answers = {m["touser"]: m["content"] for m in fakes.wecom.sent}
    assert answers == {
        user: autoreply.unsupported_reply("image", problem) for user, (_, problem) in cases.items()
    }
    assert len(set(answers.values())) == len(cases)  # each says what went wrong
    assert fakes.vllm.matching("/chat/completions") == []  # no model guessed at them


async def test_a_slow_picture_gets_a_clear_answer_and_blocks_no_one(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    fakes.wecom.add_media("SLOW", error_code_picture("E-7"), "image/png")
    fakes.wecom.media_delay_s = 5.0
    sections = _vision_sections(fakes, wecom_app, media_timeout_s=1.0)
    settings = make_settings(**sections)
    client = await make_client(settings)
    celery_worker(settings)
    await _send_wecom(client, wecom_app, FromUserName="u_slow", MsgType="image",
                      PicUrl="https://wework.qpic.cn/x", MediaId="SLOW")  # fmt: skip
    await _send_wecom(client, wecom_app, FromUserName="u_text", MsgType="text", Content="在吗")
    await wait_for(lambda: len(fakes.wecom.sent) == 2)
    # The other customer was answered while the picture was still downloading.
    assert [(m["touser"], m["content"]) for m in fakes.wecom.sent] == [
        ("u_text", "ANSWER: 在吗"),
        ("u_slow", autoreply.unsupported_reply("image", "failed")),
    ]


@pytest.fixture
def feishu_api():
    state = FeishuFakeState(app_id="cli_vision", app_secret=secrets.token_urlsafe(16))
    with serve(make_feishu_app(state)) as url:
        yield state, url


async def test_feishu_picture_is_fetched_from_the_message_resources(
    make_settings, make_client, celery_worker, fakes, wecom_app, feishu_api
) -> None:
    state, url = feishu_api
    picture = error_code_picture("E-2048", size=(800, 600), fmt="JPEG")
    state.add_resource("om_pic_1", "img_v3_key", picture, "image/jpeg")
    sections = _vision_sections(fakes, wecom_app)
    sections["feishu"] = {
        "app_id": state.app_id,
        "app_secret": state.app_secret,
        "verification_token": FEISHU_TOKEN,
        "api_base": url,
        "bot_open_id": "ou_bot",
    }
    settings = make_settings(**sections)
    client = await make_client(settings)
    celery_worker(settings)
    now = int(time.time())
    event = feishu_simulate.text_event(
        "",
        user_open_id="ou_lisi",
        message_id="om_pic_1",
        chat_id="oc_p2p",
        create_time_ms=now * 1000,
    )
    event["message"].update(message_type="image", content=json.dumps({"image_key": "img_v3_key"}))
    payload = feishu_simulate.envelope(
        "im.message.receive_v1",
        event,
        app_id=state.app_id,
        verification_token=FEISHU_TOKEN,
        event_id=secrets.token_hex(16),
        create_time_ms=now * 1000,
    )
    resp = await client.post("/webhooks/feishu", json=payload)
    assert resp.status == 200, await resp.text()
    await wait_for(lambda: len(state.sent) == 1)

    (fetch,) = state.matching("/open-apis/im/v1/messages/om_pic_1/resources/img_v3_key")
    assert fetch.query == {"type": "image"}
    assert fetch.headers["authorization"].startswith("Bearer t-")
    request = fakes.vllm.matching("/chat/completions")[0].json
    (sent,) = pictures_sent(request["messages"])
    assert _jpeg_size(sent) == (640, 480)
    assert state.sent[0]["reply_to"] == "om_pic_1"
    assert state.sent[0]["text"] == f"ANSWER: {PICTURE_QUESTION}"


async def test_kf_and_official_account_pictures_reach_the_vision_model(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    kf = WeComKfFakeState(corp_id="wwkfvision", secret="kf-secret", open_kfid="wkVISION")
    mp = WeChatMPFakeState(app_id="wxvision0001", secret="mp-secret")
    kf.media["KF_PIC"] = (error_code_picture("E-31", size=(1000, 500)), "image/png")
    mp.media["MP_PIC"] = (error_code_picture("E-32", size=(500, 1000), fmt="JPEG"), "image/jpeg")
    kf_key, mp_key = _aes_key(), _aes_key()
    with serve(make_wecom_kf_app(kf)) as kf_url, serve(make_wechat_mp_app(mp)) as mp_url:
        sections = _vision_sections(fakes, wecom_app)
        sections["wecom_kf"] = {
            "WECOM_CORP_ID": kf.corp_id,
            "secret": kf.secret,
            "token": "kf-token",
            "aes_key": kf_key,
            "WECOM_API_BASE": kf_url,
        }
        sections["wechat_mp"] = {
            "app_id": mp.app_id,
            "app_secret": mp.secret,
            "token": "mp-token",
            "aes_key": mp_key,
            "WECHAT_API_BASE": mp_url,
        }
        settings = make_settings(**sections, core={"mp_passive_wait_s": 0})
        client = await make_client(settings)
        celery_worker(settings)

        kf.add(external_userid="wmCustomer", msgtype="image", image={"media_id": "KF_PIC"})
        now = int(time.time())
        query, body = wecom_kf_simulate.build_callback(
            corp_id=kf.corp_id, token="kf-token", aes_key=kf_key, sync_token=kf.new_sync_token(),
            open_kfid=kf.open_kfid, create_time=now, timestamp=str(now),
            nonce=secrets.token_hex(4), random_prefix=os.urandom(16),
        )  # fmt: skip
        assert (await client.post("/webhooks/wecom_kf", params=query, data=body)).status == 200
        xml = wechat_mp_simulate.message_xml(
            "image", from_user="oFollower", to_user="gh_vision", create_time=now,
            PicUrl="http://mmbiz.qpic.cn/x", MediaId="MP_PIC", MsgId="880001",
        )  # fmt: skip
        query, body = wechat_mp_simulate.safe_post(
            xml, to_user="gh_vision", token="mp-token", aes_key=mp_key, app_id=mp.app_id,
            timestamp=str(now), nonce=secrets.token_hex(4), openid="oFollower",
            random_prefix=os.urandom(16),
        )  # fmt: skip
        assert (await client.post("/webhooks/wechat_mp", params=query, data=body)).status == 200
        await wait_for(lambda: len(kf.sent) == 1 and len(mp.sent) == 1)

    assert kf.sent[0]["content"] == mp.sent[0]["content"] == f"ANSWER: {PICTURE_QUESTION}"
    assert [r.query["media_id"] for r in kf.matching("/cgi-bin/media/get")] == ["KF_PIC"]
    assert [r.query["media_id"] for r in mp.matching("/cgi-bin/media/get")] == ["MP_PIC"]
    sizes = sorted(
        _jpeg_size(picture)
        for request in fakes.vllm.matching("/chat/completions")
        for picture in pictures_sent(request.json["messages"])
    )
    assert sizes == [(320, 640), (640, 320)]


def _aes_key() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(43))


async def test_bot_simulate_wecom_image_round_trip_through_the_sandbox(
    make_settings, celery_worker, fakes, wecom_app, tmp_path, capsys
) -> None:
    from aiohttp.test_utils import TestServer

    from bot.cli import embedded, simulate
    from bot.web.app import create_app

    port = embedded.free_port()
    base = f"http://127.0.0.1:{port}"
    sections = _vision_sections(fakes, wecom_app)
    sections["wecom"]["api_base"] = f"{base}/sandbox/wecom"  # `bot up` trial mode's stand-in
    settings = make_settings(**sections, core={"sandbox": True})
    server = TestServer(create_app(settings), port=port)
    await server.start_server()
    try:
        celery_worker(settings)
        picture = tmp_path / "screenshot.png"
        picture.write_bytes(error_code_picture("E-404", size=(1600, 900)))
        code = await simulate.wecom(base, settings, "lisi", "", 20.0, image=picture)
        missing = await simulate.wecom(base, settings, "lisi", "", 5.0, image=tmp_path / "no.png")
    finally:
        await server.close()
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"message/send to lisi: ANSWER: {PICTURE_QUESTION}" in out
    (request,) = fakes.vllm.matching("/chat/completions")
    (sent,) = pictures_sent(request.json["messages"])
    assert _jpeg_size(sent) == (640, 360)
    assert missing == 1
    assert "cannot read" in err


async def test_bot_simulate_wechat_mp_image_and_voice_round_trip(
    make_settings, celery_worker, fakes, wecom_app, tmp_path, capsys
) -> None:
    from aiohttp.test_utils import TestServer

    from bot.cli import embedded, simulate
    from bot.web.app import create_app

    mp = WeChatMPFakeState(app_id="wxsimulate001", secret="mp-secret")
    mp_key = _aes_key()
    port = embedded.free_port()
    base = f"http://127.0.0.1:{port}"
    picture = tmp_path / "screenshot.png"
    picture.write_bytes(error_code_picture("E-500", size=(1200, 600)))
    recording = tmp_path / "question.amr"
    recording.write_bytes(b"#!AMR\n" + bytes(320))
    with serve(make_wechat_mp_app(mp)) as mp_url:
        sections = _vision_sections(fakes, wecom_app)
        sections["wechat_mp"] = {
            "app_id": mp.app_id,
            "app_secret": mp.secret,
            "token": "mp-token",
            "aes_key": mp_key,
            "WECHAT_API_BASE": mp_url,
        }
        # Answers go out through custom/send (the simulator says so), not the passive reply.
        settings = make_settings(**sections, core={"mp_passive_wait_s": 0})
        server = TestServer(create_app(settings), port=port)
        await server.start_server()
        try:
            celery_worker(settings)
            code = await simulate.wechat_mp(base, settings, "follower", "", 20.0, image=picture)
            await wait_for(lambda: len(mp.sent) == 1)
            spoken = await simulate.wechat_mp(base, settings, "follower", "", 20.0, voice=recording)
            await wait_for(lambda: len(mp.sent) == 2)
            missing = await simulate.wechat_mp(
                base, settings, "follower", "", 5.0, image=tmp_path / "no.png"
            )
        finally:
            await server.close()
    out, err = capsys.readouterr()
    assert (code, spoken, missing) == (0, 0, 1), err
    assert out.count("accepted; the reply goes to ofollower through message/custom/send") == 2
    uploads = mp.matching("/cgi-bin/media/upload")
    assert [r.query["type"] for r in uploads] == ["image", "voice"]
    fetched = [r.query["media_id"] for r in mp.matching("/cgi-bin/media/get")]
    assert fetched == ["MP_UPLOADED_1", "MP_UPLOADED_2"]
    assert mp.media["MP_UPLOADED_1"] == (picture.read_bytes(), "image/png")
    # The picture reached the vision model; the voice, without speech recognition, got the
    # polite text.
    (request,) = fakes.vllm.matching("/chat/completions")
    (sent,) = pictures_sent(request.json["messages"])
    assert _jpeg_size(sent) == (640, 320)
    assert mp.sent[0]["content"] == f"ANSWER: {PICTURE_QUESTION}"
    assert mp.sent[1]["content"] == autoreply.unsupported_reply("voice", "")
    assert "cannot read" in err


async def test_bot_simulate_wecom_kf_image_and_voice_in_trial_mode(
    make_settings, celery_worker, fakes, wecom_app, tmp_path, capsys
) -> None:
    from aiohttp.test_utils import TestServer

    from bot.cli import embedded, simulate
    from bot.web.app import create_app

    port = embedded.free_port()
    base = f"http://127.0.0.1:{port}"
    picture = tmp_path / "screenshot.png"
    picture.write_bytes(error_code_picture("E-418", size=(900, 900)))
    recording = tmp_path / "question.amr"
    recording.write_bytes(b"#!AMR\n" + bytes(320))
    sections = _vision_sections(fakes, wecom_app)
    del sections["wecom"]
    # The server's own WeCom and 微信客服 stand-ins are the API (what `bot up` trial mode does).
    sections["wecom_kf"] = {
        "WECOM_CORP_ID": "wwsimkf",
        "secret": "kf-secret",
        "token": "kf-token",
        "aes_key": _aes_key(),
        "WECOM_API_BASE": f"{base}/sandbox/wecom",
    }
    settings = make_settings(**sections, core={"sandbox": True})
    server = TestServer(create_app(settings), port=port)
    await server.start_server()
    try:
        celery_worker(settings)
        code = await simulate.wecom_kf(base, settings, "simuser", "", 20.0, image=picture)
        first = capsys.readouterr()
        spoken = await simulate.wecom_kf(base, settings, "simuser", "", 20.0, voice=recording)
        second = capsys.readouterr()
    finally:
        await server.close()
    assert (code, spoken) == (0, 0), (first.err, second.err)
    assert f"kf/send_msg to wmsimuser: ANSWER: {PICTURE_QUESTION}" in first.out
    (request,) = fakes.vllm.matching("/chat/completions")
    (sent,) = pictures_sent(request.json["messages"])
    assert _jpeg_size(sent) == (640, 640)
    # Without speech recognition the recording gets the polite text.
    assert f"kf/send_msg to wmsimuser: {autoreply.unsupported_reply('voice', '')}" in second.out

    # Outside trial mode there is no way to put a picture in WeCom's own kf/sync_msg.
    elsewhere = {**sections["wecom_kf"], "WECOM_API_BASE": "http://127.0.0.1:1"}
    outside = make_settings(**{**sections, "wecom_kf": elsewhere})
    assert await simulate.wecom_kf(base, outside, "simuser", "", 5.0, image=picture) == 2
    assert "need trial mode" in capsys.readouterr().err


async def test_bot_simulate_feishu_image_and_voice_in_trial_mode(
    make_settings, celery_worker, fakes, wecom_app, tmp_path, capsys
) -> None:
    from aiohttp.test_utils import TestServer

    from bot.cli import embedded, simulate
    from bot.web.app import create_app

    port = embedded.free_port()
    base = f"http://127.0.0.1:{port}"
    picture = tmp_path / "screenshot.jpg"
    picture.write_bytes(error_code_picture("E-451", size=(1000, 500), fmt="JPEG"))
    recording = tmp_path / "question.ogg"
    recording.write_bytes(b"OggS" + bytes(300))
    sections = _vision_sections(fakes, wecom_app)
    # The server's own Feishu stand-in is the API (trial mode).
    sections["feishu"] = {
        "app_id": "cli_sandbox",
        "app_secret": "sandbox-secret",
        "verification_token": "sandbox-token",
        "encrypt_key": "sandbox-key",
        "api_base": f"{base}/sandbox/feishu",
    }
    settings = make_settings(**sections, core={"sandbox": True})
    server = TestServer(create_app(settings), port=port)
    await server.start_server()
    try:
        celery_worker(settings)
        code = await simulate.feishu(base, settings, "", False, False, "lisi", 20.0, image=picture)
        first = capsys.readouterr()
        spoken = await simulate.feishu(
            base, settings, "", False, False, "lisi", 20.0, voice=recording
        )
        second = capsys.readouterr()
    finally:
        await server.close()
    assert (code, spoken) == (0, 0), (first, second)
    assert f"reply: ANSWER: {PICTURE_QUESTION}" in first.out
    (request,) = fakes.vllm.matching("/chat/completions")
    (sent,) = pictures_sent(request.json["messages"])
    assert _jpeg_size(sent) == (640, 320)
    # Without speech recognition the recording gets the polite text.
    assert f"reply: {autoreply.unsupported_reply('voice', '')}" in second.out

    # Against Feishu itself a simulated message has no resources: one line says so.
    elsewhere = {**sections["feishu"], "api_base": "https://open.feishu.cn"}
    outside = make_settings(**{**sections, "feishu": elsewhere})
    assert await simulate.feishu(base, outside, "", False, False, "x", 5.0, image=picture) == 2
    assert "need trial mode" in capsys.readouterr().err
