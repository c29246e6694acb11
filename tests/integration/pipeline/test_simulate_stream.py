"""`bot simulate wecom_aibot|feishu|dingtalk --stream`: one line per update as it arrives,
with the time since the message (AI bot: as the refreshes see it; Feishu, DingTalk: as the
sandbox stand-in of their API saw it); a real web app and Celery worker, a trickling fake
model."""

from __future__ import annotations

import importlib
import itertools
import re
from typing import Any

from bot.cli import main as cli_main
from bot.cli import simulate as cli_simulate
from tests.integration.pipeline.test_wecom_aibot_end_to_end import KEY, TOKEN

# The modules (the package's `feishu` and `dingtalk` names are its functions).
feishu_simulate = importlib.import_module("bot.cli.simulate.feishu")
dingtalk_simulate = importlib.import_module("bot.cli.simulate.dingtalk")

LINE = re.compile(r"^\+\s*(\d+\.\d\d)s( \[finish\])? (.*)$")


async def test_simulate_stream_prints_each_update_with_its_time(
    make_settings, make_client, celery_worker, fakes, wecom_app, capsys
) -> None:
    sections: dict[str, Any] = fakes.sections(wecom_app)
    sections["wecom_aibot"] = {"token": TOKEN, "aes_key": KEY}
    settings = make_settings(**sections)
    client = await make_client(settings)
    celery_worker(settings)
    fakes.vllm.chunk_chars = 3
    fakes.vllm.chunk_delay_s = 0.3
    base = str(client.make_url("")).rstrip("/")
    status = await cli_simulate.wecom_aibot(base, settings, "wangwu", "发票怎么开", 30, stream=True)
    out = capsys.readouterr().out
    assert status == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("stream ")
    updates = [LINE.match(line) for line in lines[1:]]
    assert all(updates), lines
    times = [float(m[1]) for m in updates if m]
    texts = [m[3] for m in updates if m]
    assert times == sorted(times)
    # The answer grew over several refreshes, each a beginning of the next; then finish.
    assert len(texts) >= 3, lines
    # (A fallback model on a loaded machine starts again from nothing: an empty update.)
    grew = texts[len(texts) - texts[::-1].index("") :] if "" in texts else texts
    assert all(b.startswith(a) for a, b in itertools.pairwise(grew)), texts
    last = updates[-1]
    assert last is not None
    assert last[2] == " [finish]"
    assert last[3].startswith("ANSWER: 发票怎么开")
    assert "\n" not in last[3]


def test_stream_on_another_platform_says_what_works(capsys) -> None:
    assert cli_main.main(["simulate", "wecom", "你好", "--stream"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "--stream works with wecom_aibot, feishu and dingtalk"


async def test_simulate_feishu_stream_shows_the_card_typing_itself(
    make_settings, celery_worker, fakes, wecom_app, capsys
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from bot.cli import embedded
    from bot.web.app import create_app

    # The web process serves the sandbox stand-in the bot's Feishu app talks to.
    port = embedded.free_port()
    sections: dict[str, Any] = fakes.sections(wecom_app)
    sections["core"] = {"sandbox": True}
    sections["feishu"] = {
        "app_id": "cli_sandbox",
        "app_secret": "sandbox-secret",
        "verification_token": "sandbox-token",
        "encrypt_key": "sandbox-key",
        "api_base": f"http://127.0.0.1:{port}/sandbox/feishu",
        "streaming_cards": True,
        "card_updates_per_s": 5,
    }
    settings = make_settings(**sections)
    client = TestClient(TestServer(create_app(settings), port=port))
    await client.start_server()
    try:
        celery_worker(settings)
        fakes.vllm.chunk_chars = 2
        fakes.vllm.chunk_delay_s = 0.1
        base = f"http://127.0.0.1:{port}"
        status = await cli_simulate.feishu(
            base, settings, "怎么退货", False, False, "lisi", 30, stream=True
        )
    finally:
        await client.close()
    out = capsys.readouterr().out
    assert status == 0, out
    lines = out.splitlines()
    assert lines[0] == "POST /webhooks/feishu -> 200 '{}'"
    assert re.fullmatch(r"\+\s*\d+\.\d\ds card \d+ shown as the reply", lines[1]), lines
    assert re.fullmatch(r"\+\s*\d+\.\d\ds \[closed\]", lines[-1]), lines
    texts = [line.split("s ", 1)[1] for line in lines[2:-1]]
    # Typed in several updates, each a beginning of the next, to the whole answer.
    assert len(texts) >= 3, lines
    assert all(b.startswith(a) for a, b in itertools.pairwise(texts[:-1])), texts
    assert texts[-1].startswith("ANSWER: 怎么退货")


async def test_simulate_feishu_stream_without_the_stand_in_says_what_to_do(
    make_settings, make_client, fakes, wecom_app, capsys
) -> None:
    sections: dict[str, Any] = fakes.sections(wecom_app)
    sections["feishu"] = {
        "app_id": "cli_x",
        "app_secret": "s",
        "verification_token": "t",
        "encrypt_key": "k",
    }
    settings = make_settings(**sections)
    client = await make_client(settings)  # no BOT_SANDBOX: no stand-in
    base = str(client.make_url("")).rstrip("/")
    status = await cli_simulate.feishu(base, settings, "你好", False, False, "lisi", 5, stream=True)
    assert status == 2
    err = capsys.readouterr().err
    assert err.strip() == feishu_simulate.NO_STAND_IN


TEMPLATE = "sandbox-ai-card.schema"


def _dingtalk(port: int, **extra: Any) -> dict[str, Any]:
    """A DingTalk app whose API (and sessionWebhook host) is the sandbox stand-in."""
    stand_in = f"http://127.0.0.1:{port}/sandbox/dingtalk"
    return {
        "app_key": "ding-sandbox",
        "app_secret": "sandbox-secret",
        "api_base": stand_in,
        "oapi_base": stand_in,
        **extra,
    }


async def _serve_and_simulate(
    make_settings, celery_worker, sections: dict[str, Any], port: int, text: str, group: bool
) -> int:
    from aiohttp.test_utils import TestClient, TestServer

    from bot.web.app import create_app

    settings = make_settings(**sections)
    client = TestClient(TestServer(create_app(settings), port=port))
    await client.start_server()
    try:
        celery_worker(settings)
        base = f"http://127.0.0.1:{port}"
        return await cli_simulate.dingtalk(
            base, settings, text, group, "manager4220", 30, stream=True
        )
    finally:
        await client.close()


async def test_simulate_dingtalk_stream_shows_the_ai_card_typing_itself(
    make_settings, celery_worker, fakes, wecom_app, capsys
) -> None:
    from bot.cli import embedded

    port = embedded.free_port()
    sections: dict[str, Any] = fakes.sections(wecom_app)
    sections["core"] = {"sandbox": True}
    sections["dingtalk"] = _dingtalk(port, card_template_id=TEMPLATE, card_updates_per_s=5)
    fakes.vllm.chunk_chars = 2
    fakes.vllm.chunk_delay_s = 0.1
    status = await _serve_and_simulate(
        make_settings, celery_worker, sections, port, "怎么退货", group=True
    )
    out = capsys.readouterr().out
    assert status == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("POST /webhooks/dingtalk -> 200"), lines
    stamp = r"\+\s*(\d+\.\d\d)s "
    # Delivered into the group with the asker @-mentioned, then typed, finalized, FINISHED.
    assert re.fullmatch(stamp + r"\[card @manager4220\] \S.*", lines[1]), lines
    assert re.fullmatch(stamp + r"\[final\] ANSWER: 怎么退货.*", lines[-2]), lines
    assert re.fullmatch(stamp + r"\[FINISHED\]", lines[-1]), lines
    times = [float(re.match(stamp, line)[1]) for line in lines[1:]]  # type: ignore[index]
    assert times == sorted(times)
    texts = [lines[1].split("] ", 1)[1]] + [line.split("s ", 1)[1] for line in lines[2:-2]]
    texts.append(lines[-2].split("[final] ", 1)[1])
    # Typed in several updates, each the whole text so far, a beginning of the next.
    assert len(texts) >= 4, lines
    assert all(b.startswith(a) for a, b in itertools.pairwise(texts)), texts


async def test_simulate_dingtalk_stream_without_a_template_shows_the_markdown_reply(
    make_settings, celery_worker, fakes, wecom_app, capsys
) -> None:
    from bot.cli import embedded

    port = embedded.free_port()
    sections: dict[str, Any] = fakes.sections(wecom_app)
    sections["core"] = {"sandbox": True}
    sections["dingtalk"] = _dingtalk(port)  # no card template: markdown, as today
    status = await _serve_and_simulate(
        make_settings, celery_worker, sections, port, "多久发货", group=False
    )
    out = capsys.readouterr().out
    assert status == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("POST /webhooks/dingtalk -> 200"), lines
    # One markdown reply, through the message's sessionWebhook (the stand-in's).
    assert len(lines) == 2, lines
    assert re.fullmatch(r"\+\s*\d+\.\d\ds reply: ANSWER: 多久发货.*", lines[1]), lines


async def test_simulate_dingtalk_stream_without_the_stand_in_says_what_to_do(
    make_settings, make_client, fakes, wecom_app, capsys
) -> None:
    sections: dict[str, Any] = fakes.sections(wecom_app)
    settings = make_settings(**sections, dingtalk={"app_key": "k", "app_secret": "s"})
    client = await make_client(settings)
    base = str(client.make_url("")).rstrip("/")
    # The app's API is DingTalk's own: nothing to read the card back from.
    status = await cli_simulate.dingtalk(base, settings, "你好", False, "u1", 5, stream=True)
    assert status == 2
    assert capsys.readouterr().err.strip() == dingtalk_simulate.NO_STAND_IN
    # Pointed at a stand-in, but the server serves none (no BOT_SANDBOX).
    stand_in = {"app_key": "k", "app_secret": "s", "api_base": f"{base}/sandbox/dingtalk"}
    settings = make_settings(**sections, dingtalk=stand_in)
    status = await cli_simulate.dingtalk(base, settings, "你好", False, "u1", 5, stream=True)
    assert status == 2
    assert capsys.readouterr().err.strip() == dingtalk_simulate.NO_STAND_IN
