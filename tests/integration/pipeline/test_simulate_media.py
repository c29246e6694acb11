"""`bot simulate dingtalk --image/--voice` and `bot simulate wecom_aibot --image/--voice` against a
running web app (trial mode, its own stand-ins) and a real Celery worker; the vision model is
a fake on loopback. The picture is drawn with Pillow."""

from __future__ import annotations

import io
import os
import secrets
import string
from typing import Any

from aiohttp.test_utils import TestServer
from PIL import Image

from bot.agent.agent import PICTURE_QUESTION
from bot.cli import embedded
from bot.cli import simulate as cli_simulate
from bot.cli.simulate.dingtalk import NO_MEDIA_STAND_IN
from bot.cli.simulate.wecom_aibot import NO_STAND_IN, VOICE_NEEDS_WORDS, VOICE_SENT
from bot.pipeline import autoreply
from bot.web.app import create_app
from tests.fakes.openai_server import pictures_sent
from tests.integration.pictures import error_code_picture

KEY = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(43))


def _sections(fakes, wecom_app, port: int) -> dict[str, Any]:
    fakes.vllm.vision = True
    sections: dict[str, Any] = fakes.sections(wecom_app)
    sections["vllm"].update(vision=True, image_max_side=640)
    sections["core"] = {"sandbox": True, "port": port}
    stand_in = f"http://127.0.0.1:{port}/sandbox/dingtalk"
    sections["dingtalk"] = {
        "app_key": "ding-sandbox",
        "app_secret": "sandbox-secret",
        "api_base": stand_in,
        "oapi_base": stand_in,
    }
    sections["wecom_aibot"] = {"token": "aibot-sim-token", "aes_key": KEY}
    return sections


def _shown_size(fakes, index: int) -> tuple[int, int]:
    request = fakes.vllm.matching("/chat/completions")[index].json
    (sent,) = pictures_sent(request["messages"])
    with Image.open(io.BytesIO(sent)) as img:
        return img.size


async def test_simulate_dingtalk_and_aibot_pictures_and_voices(
    make_settings, celery_worker, fakes, wecom_app, tmp_path, capsys
) -> None:
    port = embedded.free_port()
    base = f"http://127.0.0.1:{port}"
    picture = tmp_path / "screenshot.png"
    picture.write_bytes(error_code_picture("E-808", size=(1200, 600)))
    recording = tmp_path / "question.amr"
    recording.write_bytes(b"#!AMR\n" + os.urandom(200))
    settings = make_settings(**_sections(fakes, wecom_app, port))
    server = TestServer(create_app(settings), port=port)
    await server.start_server()
    try:
        celery_worker(settings)
        ding = await cli_simulate.dingtalk(base, settings, "", False, "u1", 30, image=picture)
        ding_out = capsys.readouterr()
        spoken = await cli_simulate.dingtalk(base, settings, "", False, "u2", 30, voice=recording)
        spoken_out = capsys.readouterr()
        aibot = await cli_simulate.wecom_aibot(base, settings, "u3", "", 30, image=picture)
        aibot_out = capsys.readouterr()
        said = await cli_simulate.wecom_aibot(base, settings, "u4", "我要退货", 30, voice=recording)
        said_out = capsys.readouterr()
    finally:
        await server.close()
    assert (ding, spoken, aibot, said) == (0, 0, 0, 0), (ding_out, spoken_out, aibot_out, said_out)
    assert f"reply: ANSWER: {PICTURE_QUESTION}" in ding_out.out
    assert _shown_size(fakes, 0) == (640, 320)  # fetched through messageFiles/download
    # Without speech recognition the recording gets the polite text.
    assert f"reply: {autoreply.unsupported_reply('voice', '')}" in spoken_out.out
    # The AI bot's picture went encrypted through the stand-in and was decrypted.
    assert f"ANSWER: {PICTURE_QUESTION}" in aibot_out.out
    assert _shown_size(fakes, 1) == (640, 320)
    # AI bot voice is WeCom's transcript: the words go as one, and are answered as text.
    assert said_out.out.startswith(VOICE_SENT)
    assert "ANSWER: 我要退货" in said_out.out


async def test_simulate_media_outside_trial_mode_says_what_to_do(
    make_settings, make_client, fakes, wecom_app, tmp_path, capsys
) -> None:
    picture = tmp_path / "p.png"
    picture.write_bytes(error_code_picture("E-1", size=(100, 50)))
    sections = _sections(fakes, wecom_app, 8080)
    sections["core"] = {}  # no BOT_SANDBOX: no stand-ins
    sections["dingtalk"]["api_base"] = "https://api.dingtalk.com"
    settings = make_settings(**sections)
    client = await make_client(settings)
    base = str(client.make_url("")).rstrip("/")
    status = await cli_simulate.dingtalk(base, settings, "", False, "u1", 5, image=picture)
    assert status == 2
    assert capsys.readouterr().err.strip() == NO_MEDIA_STAND_IN
    status = await cli_simulate.wecom_aibot(base, settings, "u1", "", 5, image=picture)
    assert status == 2
    assert capsys.readouterr().err.strip() == NO_STAND_IN
    # A voice for the AI bot is sent as WeCom's transcript: without words, nothing to send.
    status = await cli_simulate.wecom_aibot(base, settings, "u1", " ", 5, voice=picture)
    assert status == 2
    assert capsys.readouterr().err.strip() == VOICE_NEEDS_WORDS


async def test_the_aibot_fetches_from_this_server_in_trial_mode_only(
    make_settings, fakes, wecom_app, tmp_path
) -> None:
    import aiohttp
    import pytest

    from adapters.base import FetchesMedia
    from bot.domain import Attachment, Content
    from bot.errors import PayloadError, PlatformUnavailableError
    from bot.wiring import adapter_for

    port = embedded.free_port()  # nothing listens: a fetch that is tried fails to connect
    url = f"http://127.0.0.1:{port}/sandbox/wecom_aibot/media/x"
    item = Attachment(Content.IMAGE, url)
    outcomes: dict[bool, type[Exception]] = {}
    for sandbox in (False, True):
        sections = _sections(fakes, wecom_app, port)
        sections["core"] = {"sandbox": sandbox, "port": port}
        settings = make_settings(**sections)
        adapter = adapter_for(
            settings.wecom_aibot, app="default", settings=settings, tokens=None, redis=None
        )
        assert isinstance(adapter, FetchesMedia)
        async with aiohttp.ClientSession() as http:
            with pytest.raises((PayloadError, PlatformUnavailableError)) as caught:
                # The AI bot's URL alone names the file: no message is read.
                await adapter.fetch_media(http, None, item, tmp_path / f"{sandbox}.png")  # type: ignore[arg-type]
        outcomes[sandbox] = caught.type
    # Refused before any connection outside trial mode; tried (and unreachable) inside it.
    assert outcomes == {False: PayloadError, True: PlatformUnavailableError}
