"""WeCom 智能机器人 pictures, files and voice in long-connection mode, end to end: the fake
gateway pushes an ``aibot_msg_callback`` whose picture names its own ``aeskey`` → the holder
(`bot stream wecom_aibot`) → intake → a real Celery worker → the URL fetched from a fake
resource server and decrypted with that key → the vision model → ``aibot_respond_msg``.

Each picture is drawn with Pillow and encrypted with a fresh random key, as WeCom does in
this mode; real Redis, Celery and AES; the gateway, resource server and vLLM are fakes.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from PIL import Image

from adapters.wechat import crypto
from adapters.wecom_aibot import media as aibot_media
from bot import keys
from bot.agent.agent import PICTURE_QUESTION
from bot.domain import Content
from bot.pipeline import autoreply
from bot.stream import runner as stream
from tests.fakes import wecom_aibot_ws
from tests.fakes.base import serve
from tests.fakes.openai_server import pictures_sent
from tests.fakes.wecom_aibot_api import AiBotFakeState, another_key, make_aibot_app
from tests.fakes.wecom_aibot_ws import AiBotGateway
from tests.integration.adapters.streams import Streams
from tests.integration.conftest import wait_for
from tests.integration.pictures import error_code_picture

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[AiBotGateway, str]]:
    async with wecom_aibot_ws.serving() as found:
        yield found


@pytest.fixture
def resources() -> Iterator[AiBotFakeState]:
    state = AiBotFakeState()
    with serve(make_aibot_app(state)) as url:
        state.base_url = url
        yield state


@pytest.fixture
async def streams() -> AsyncIterator[Streams]:
    def run(settings: Any, stop: asyncio.Event) -> Any:
        return stream.run_wecom_aibot(
            settings, stop, lease_ttl_s=1.5, backoff_base_s=0.1, status_every_s=0.2
        )

    s = Streams(run)
    yield s
    await s.stop_all()


@pytest.fixture
def settings(make_settings, celery_worker, fakes, wecom_app, gateway, resources):
    fake, url = gateway
    fakes.vllm.vision = True
    sections: dict[str, Any] = fakes.sections(wecom_app)
    sections["vllm"].update(vision=True, image_max_side=640)
    sections["wecom_aibot"] = {
        "mode": "longconn",
        "bot_id": fake.bot_id,
        "secret": fake.secret,
        "ws_url": url,
        "media_hosts": f"qpic.cn,{resources.base_url}",
    }
    made = make_settings(**sections)
    celery_worker(made)
    return made


def new_key() -> tuple[bytes, str]:
    """A per-message key as WeCom names it: 32 random bytes and their base64."""
    raw = os.urandom(32)
    return raw, base64.b64encode(raw).decode()


def body(msgid: str, user: str, msgtype: str, content: dict[str, Any]) -> dict[str, Any]:
    return {
        "msgid": msgid,
        "aibotid": "aibot-fake",
        "chattype": "single",
        "from": {"userid": user},
        "msgtype": msgtype,
        msgtype: content,
    }


async def answer(fake: AiBotGateway, data: dict[str, Any]) -> str:
    """Push one callback; the text of the finished stream answered under its req_id."""
    req_id = await fake.callback(data)

    def final() -> str | None:
        for r in fake.responses:
            if r["headers"]["req_id"] == req_id and r["body"]["stream"]["finish"]:
                return str(r["body"]["stream"]["content"])
        return None

    await wait_for(lambda: final() is not None, timeout_s=60)
    return final() or ""


async def test_a_picture_opens_with_its_own_key_and_reaches_the_vision_model(
    settings, streams, gateway, resources: AiBotFakeState, fakes, sync_redis
) -> None:
    fake, _ = gateway
    streams.start(settings)
    await wait_for(lambda: fake.subscribes == 1 and bool(fake.sockets))
    raw, aeskey = new_key()
    picture = error_code_picture("E-4096", size=(1600, 800))
    url = resources.add_file("lc-pic", aibot_media.encrypt_file(picture, raw))

    said = await answer(fake, body("lc-pic-1", "u1", "image", {"url": url, "aeskey": aeskey}))
    assert said == f"ANSWER: {PICTURE_QUESTION}"
    (sent,) = pictures_sent(fakes.vllm.matching("/chat/completions")[0].json["messages"])
    with Image.open(io.BytesIO(sent)) as img:  # decrypted with the message's key, downscaled
        assert (img.format, img.size) == ("JPEG", (640, 320))
    # The picture stays with the conversation, its key does not (dropped once fetched).
    kept = sync_redis.get(keys.pictures("wecom_aibot:default:u1"))
    assert kept is not None
    assert aeskey.encode() not in kept
    assert b'"key"' not in kept

    # 图文混排: the words are the question, the picture (its own key again) goes along.
    raw2, aeskey2 = new_key()
    url2 = resources.add_file("lc-pic2", aibot_media.encrypt_file(picture, raw2))
    items = [
        {"msgtype": "text", "text": {"content": "这个错误码什么意思？"}},
        {"msgtype": "image", "image": {"url": url2, "aeskey": aeskey2}},
    ]
    mixed = await answer(fake, body("lc-pic-2", "u2", "mixed", {"msg_item": items}))
    assert mixed == "ANSWER: 这个错误码什么意思？\n[图片]"
    asked = fakes.vllm.matching("/chat/completions")[1].json["messages"][-1]
    assert pictures_sent([asked]) == [sent]


async def test_a_file_a_voice_transcript_and_an_unknown_type_are_answered(
    settings, streams, gateway, resources: AiBotFakeState, fakes
) -> None:
    fake, _ = gateway
    streams.start(settings)
    await wait_for(lambda: fake.subscribes == 1 and bool(fake.sockets))
    raw, aeskey = new_key()
    words = "发票号码 0042，金额合计 1234.50 元。"
    url = resources.add_file("lc-doc", aibot_media.encrypt_file(words.encode(), raw))
    said = await answer(fake, body("lc-file-1", "u3", "file", {"url": url, "aeskey": aeskey}))
    assert said.startswith("ANSWER:")
    system = str(fakes.vllm.matching("/chat/completions")[0].json["messages"][0]["content"])
    assert words in system
    # Voice comes transcribed by WeCom in this mode: answered as the words said.
    voice = await answer(fake, body("lc-voice-1", "u4", "voice", {"content": "我要退货"}))
    assert voice == "ANSWER: 我要退货"
    # A type the bot cannot read (one WeCom may add): the polite text, not silence.
    where = await answer(fake, body("lc-other-1", "u5", "location", {"latitude": 23.1}))
    assert where == autoreply.unsupported_reply(Content.OTHER)


async def test_a_wrong_or_broken_key_gets_the_polite_answer(
    settings, streams, gateway, resources: AiBotFakeState, fakes, caplog
) -> None:
    fake, _ = gateway
    streams.start(settings)
    await wait_for(lambda: fake.subscribes == 1 and bool(fake.sockets))
    raw, _ = new_key()
    small = error_code_picture("E-1", size=(200, 100))
    sealed = aibot_media.encrypt_file(small, raw)
    url = resources.add_file("lc-wk", sealed)
    wrong = another_key(lambda key: crypto.open_blocks(sealed, key), opens=False)
    other = base64.b64encode(wrong).decode()
    short = base64.b64encode(os.urandom(16)).decode()
    cases = {
        "wrongkey": {"url": url, "aeskey": other},  # decrypts to garbage: padding refused
        "notbase64": {"url": url, "aeskey": "%%%not-a-key%%%"},
        "short": {"url": url, "aeskey": short},  # 16 bytes
        "nokey": {"url": url},
        "host": {"url": "http://127.0.0.1:9/aibot-media/x", "aeskey": other},
    }
    said = await asyncio.gather(
        *(answer(fake, body(f"lc-bad-{n}", n, "image", c)) for n, c in cases.items())
    )
    assert list(said) == [autoreply.unsupported_reply("image", "refused")] * len(cases)
    assert fakes.vllm.matching("/chat/completions") == []  # no model guessed at them
    # Neither key shows in the logs (the worker logs one line per refusal, with the reason).
    assert other not in caplog.text
    assert short not in caplog.text
