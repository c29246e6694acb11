"""Small-talk texts from AGENT_* settings and from a bot.toml app, through `wiring.agent`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import wiring
from bot.agent import smalltalk
from bot.db.engine import get_engine
from bot.domain import InboundMessage, Platform
from tests.unit.bot.test_appconfig import ENV_WECOM

BOT_TOML = """
[wecom.default]
greeting_text = "欢迎光临青禾商城！"
"""


async def test_env_texts_and_an_apps_own_reach_the_agent(
    make_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV_WECOM.items():
        monkeypatch.setenv(name, value)
    toml = tmp_path / "bot.toml"
    toml.write_text(BOT_TOML, encoding="utf-8")
    settings = make_settings(
        core={"database_url": f"sqlite:///{tmp_path}/bot.db", "config_file": toml},
        agent={"greeting_text": "您好，这里是青禾客服。", "goodbye_text": "祝您生活愉快！"},
    )
    engine = get_engine(settings.core.effective_database_url())

    async def said(platform: Platform, text: str) -> str:
        agent = wiring.agent(
            settings,
            router=None,
            knowledge=None,
            backend=wiring.order_backend(settings, engine),
            bindings=wiring.binding_store(settings, engine),
            platform=platform.value,
        )
        message = InboundMessage(platform, "default", "e1", "c1", "u1", text)
        return (await agent.reply([], message)).text

    assert await said(Platform.WEB, "你好") == "您好，这里是青禾客服。"
    assert await said(Platform.WECOM, "你好") == "欢迎光临青禾商城！"
    assert await said(Platform.WECOM, "再见") == "祝您生活愉快！"
    assert await said(Platform.WECOM, "谢谢") == smalltalk.DEFAULT_TEXTS[smalltalk.THANKS]
