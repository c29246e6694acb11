"""WeCom 智能机器人 pictures and files end to end: a signed, encrypted callback naming an
encrypted URL → web app → Celery worker → the URL fetched from a fake resource server,
decrypted with the bot's EncodingAESKey → the vision model (or the file's text) → the stream.

Real HTTP, real AES both ways, real Redis and Celery; the resource server and vLLM are fakes
on loopback. The pictures are drawn with Pillow.
"""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import string
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from adapters.wechat import crypto
from adapters.wecom_aibot import media as aibot_media
from adapters.wecom_aibot import simulate
from bot.agent.agent import PICTURE_QUESTION
from bot.pipeline import autoreply
from tests.fakes.base import serve
from tests.fakes.openai_server import pictures_sent
from tests.fakes.wecom_aibot_api import MEDIA_PATH, AiBotFakeState, another_key, make_aibot_app
from tests.integration.pictures import error_code_picture

TOKEN = "aibot-media-token"
KEY = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(43))
AES = crypto.decode_aes_key(KEY)


@pytest.fixture
def resources() -> Iterator[AiBotFakeState]:
    state = AiBotFakeState()
    with serve(make_aibot_app(state)) as url:
        state.base_url = url
        yield state


def _settings(make_settings, fakes, wecom_app, resources, **aibot: Any):
    fakes.vllm.vision = True
    sections: dict[str, Any] = fakes.sections(wecom_app)
    sections["vllm"].update(vision=True, image_max_side=640)
    sections["wecom_aibot"] = {
        "token": TOKEN,
        "aes_key": KEY,
        "media_hosts": f"qpic.cn,{resources.base_url}",
        **aibot,
    }
    return make_settings(**sections)


async def _post(client, data: dict[str, Any]) -> dict[str, Any]:
    stamp = {"timestamp": str(int(time.time())), "nonce": secrets.token_hex(6)}
    query, body = simulate.build_post(
        data, token=TOKEN, aes_key=KEY, random_prefix=os.urandom(16), **stamp
    )
    resp = await client.post("/webhooks/wecom_aibot", params=query, data=body)
    assert resp.status == 200, await resp.text()
    return simulate.open_reply(await resp.read(), token=TOKEN, aes_key=KEY)


async def _answer(client, data: dict[str, Any], timeout_s: float = 30) -> str:
    """Send a message, then refresh its stream as WeCom does until it finishes."""
    sid = (await _post(client, data))["stream"]["id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = await _post(client, simulate.refresh(sid, msgid=secrets.token_hex(8)))
        if answer["stream"]["finish"]:
            return str(answer["stream"]["content"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"stream {sid} not finished within {timeout_s}s")


async def test_a_picture_and_a_mixed_message_reach_the_vision_model(
    make_settings, make_client, celery_worker, fakes, wecom_app, resources: AiBotFakeState
) -> None:
    settings = _settings(make_settings, fakes, wecom_app, resources)
    client = await make_client(settings)
    celery_worker(settings)
    picture = error_code_picture("E-4096", size=(1600, 800))
    url = resources.add_file("pic1", aibot_media.encrypt_file(picture, AES))

    answer = await _answer(client, simulate.media_message("image", url, msgid="aibot-pic-1"))
    assert answer == f"ANSWER: {PICTURE_QUESTION}"
    assert [r.path for r in resources.matching(MEDIA_PATH + "/pic1")] == [MEDIA_PATH + "/pic1"]
    first = fakes.vllm.matching("/chat/completions")[0].json
    (sent,) = pictures_sent(first["messages"])
    with Image.open(io.BytesIO(sent)) as img:  # the decrypted picture, downscaled
        assert (img.format, img.size) == ("JPEG", (640, 320))

    # Words and a picture in one (mixed) message: asked with the words, shown the picture.
    url2 = resources.add_file("pic2", aibot_media.encrypt_file(picture, AES))
    mixed = simulate.media_message("image", url2, msgid="aibot-pic-2", text="这个错误码什么意思？")
    # The words say where the picture was ("[图片]"), the picture itself goes along.
    said = "这个错误码什么意思？\n[图片]"
    assert await _answer(client, mixed) == f"ANSWER: {said}"
    asked = fakes.vllm.matching("/chat/completions")[1].json["messages"][-1]
    assert asked["content"][0] == {"type": "text", "text": said}
    assert pictures_sent([asked]) == [sent]


async def test_a_file_is_decrypted_and_read_into_the_conversation(
    make_settings, make_client, celery_worker, fakes, wecom_app, resources: AiBotFakeState
) -> None:
    settings = _settings(make_settings, fakes, wecom_app, resources)
    client = await make_client(settings)
    celery_worker(settings)
    words = "发票号码 0042，金额合计 1234.50 元。"
    url = resources.add_file("doc1", aibot_media.encrypt_file(words.encode(), AES))
    answer = await _answer(client, simulate.media_message("file", url, msgid="aibot-file-1"))
    assert answer.startswith("ANSWER:")
    system = str(fakes.vllm.matching("/chat/completions")[0].json["messages"][0]["content"])
    assert words in system


async def test_media_that_cannot_be_shown_get_a_polite_answer(
    make_settings, make_client, celery_worker, fakes, wecom_app, resources: AiBotFakeState
) -> None:
    settings = _settings(make_settings, fakes, wecom_app, resources, media_max_bytes=20_000)
    client = await make_client(settings)
    celery_worker(settings)
    small = error_code_picture("E-1", size=(200, 100))

    # Sealed with another bot's key: one our key opens as noise, one it does not open.
    def ours_open(key: bytes) -> bytes:
        return crypto.open_blocks(aibot_media.encrypt_file(small, key), AES)

    noise = aibot_media.encrypt_file(small, another_key(ours_open, opens=True))
    refused = aibot_media.encrypt_file(small, another_key(ours_open, opens=False))
    cases = {
        # Bytes not encrypted at all, and a picture sealed with another bot's key: most such
        # files fail the padding check; about one in 256 passes it as noise, not a picture.
        "plain": (resources.add_file("plain", small + b"x" * (-len(small) % 16 + 1)), "refused"),
        "wrongkey": (resources.add_file("wk", refused), "refused"),
        "wrongkey-noise": (resources.add_file("wkn", noise), "not_image"),
        "big": (
            resources.add_file("big", aibot_media.encrypt_file(os.urandom(30_000), AES)),
            "too_large",
        ),
        "host": ("http://127.0.0.1:9/aibot-media/x", "refused"),  # not an allowed host
        "gone": (resources.base_url + MEDIA_PATH + "/expired", "failed"),  # 404
    }
    answers = await asyncio.gather(
        *(
            _answer(client, simulate.media_message("image", url, msgid=f"bad-{n}", user=n))
            for n, (url, _) in cases.items()
        )
    )
    expected = [autoreply.unsupported_reply("image", why) for _, why in cases.values()]
    assert list(answers) == expected
    assert fakes.vllm.matching("/chat/completions") == []  # no model guessed at them
    folder = settings.core.data_dir / "media" / "wecom_aibot" / "default"
    # Nothing undecrypted or oversized is kept; what decrypted is kept as any received file.
    kept = [p.read_bytes() for p in folder.iterdir()]
    assert kept == [crypto.open_blocks(noise, AES)]


async def test_a_slow_picture_gets_a_clear_answer_and_blocks_no_one(
    make_settings, make_client, celery_worker, fakes, wecom_app, resources: AiBotFakeState
) -> None:
    settings = _settings(make_settings, fakes, wecom_app, resources, media_timeout_s=3.0)
    client = await make_client(settings)
    celery_worker(settings)
    resources.delay_s = 10.0  # the resource server answers after 10 s; the bot waits 3
    url = resources.add_file("slow", aibot_media.encrypt_file(error_code_picture("E-7"), AES))
    slow = asyncio.create_task(
        _answer(client, simulate.media_message("image", url, msgid="slow-1", user="u_slow"))
    )
    text = await _answer(client, simulate.text_message("在吗", msgid="text-1", user="u_text"))
    downloading = not slow.done()
    assert text == "ANSWER: 在吗"
    assert downloading  # the other member was answered while the picture was still coming
    assert await slow == autoreply.unsupported_reply("image", "failed")
