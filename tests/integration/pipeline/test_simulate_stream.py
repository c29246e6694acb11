"""`bot simulate wecom_aibot --stream`: one line per update as the refreshes see it, with
the time since the message; a real web app and Celery worker, a trickling fake model."""

from __future__ import annotations

import itertools
import re
from typing import Any

from bot.cli import main as cli_main
from bot.cli import simulate as cli_simulate
from tests.integration.pipeline.test_wecom_aibot_end_to_end import KEY, TOKEN

LINE = re.compile(r"^\+\s*(\d+\.\d\d)s( \[finish\])? (.*)$")


async def test_simulate_stream_prints_each_update_with_its_time(
    make_settings, make_client, celery_worker, fakes, wecom_app, capsys
) -> None:
    sections: dict[str, Any] = fakes.sections(wecom_app)
    sections["wecom_aibot"] = {"token": TOKEN, "aes_key": KEY}
    settings = make_settings(**sections)
    client = await make_client(settings)
    celery_worker(settings)
    fakes.vllm.chunk_chars = 2
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
    assert all(b.startswith(a) for a, b in itertools.pairwise(texts)), texts
    last = updates[-1]
    assert last is not None
    assert last[2] == " [finish]"
    assert last[3].startswith("ANSWER: 发票怎么开")
    assert "\n" not in last[3]


def test_stream_on_another_platform_says_what_works(capsys) -> None:
    assert cli_main.main(["simulate", "dingtalk", "你好", "--stream"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "--stream works with `bot simulate wecom_aibot` (others: not yet)"
