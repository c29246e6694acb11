"""WECOM_AIBOT_* settings and bot.toml [wecom_aibot.NAME] apps: validation and wiring."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.wecom_aibot import WeComAiBotAdapter
from bot import wiring
from bot.doctor.platforms import check_callback
from bot.doctor.result import Status
from bot.errors import ConfigError
from bot.settings import Settings

KEY = ("aibotSettingsKey1" * 3)[:43]


def test_env_app_is_wired_with_its_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WECOM_AIBOT_TOKEN", "tok")
    monkeypatch.setenv("WECOM_AIBOT_AES_KEY", KEY)
    monkeypatch.setenv("WECOM_AIBOT_WELCOME_TEXT", "欢迎光临")
    settings = Settings.load(None)
    adapters = wiring.webhook_adapters(settings)
    bot = adapters[("wecom_aibot", "default")]
    assert isinstance(bot, WeComAiBotAdapter)
    assert bot._welcome == "欢迎光临"
    result = check_callback("wecom_aibot", "default", settings.wecom_aibot)
    assert result is not None
    assert result.status is Status.OK


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"token": "tok"}, "WECOM_AIBOT_AES_KEY"),
        ({"aes_key": KEY}, "WECOM_AIBOT_TOKEN"),
        ({"token": "tok", "aes_key": "short"}, "43-character"),
        ({"token": "changeme", "aes_key": KEY}, "placeholder"),
    ],
)
def test_half_or_wrong_configuration_stops_startup(values: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        Settings.load(None, wecom_aibot=values)


def test_a_named_app_of_bot_toml(tmp_path: Path) -> None:
    toml = tmp_path / "bot.toml"
    toml.write_text(
        f'[wecom_aibot.sales]\ntoken = "sales-token"\naes_key = "{KEY}"\nbot_id = "AIBOT9"\n',
        encoding="utf-8",
    )
    settings = Settings.load(None, core={"config_file": toml})
    adapters = wiring.webhook_adapters(settings)
    assert ("wecom_aibot", "default") not in adapters
    sales = adapters[("wecom_aibot", "sales")]
    assert isinstance(sales, WeComAiBotAdapter)
    assert (sales.app, sales._bot_id) == ("sales", "AIBOT9")


def test_long_connection_mode_needs_bot_id_and_secret_not_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.settings import apps as appconfig

    monkeypatch.setenv("WECOM_AIBOT_MODE", "longconn")
    monkeypatch.setenv("WECOM_AIBOT_SECRET", "s3cret")
    with pytest.raises(ConfigError, match="WECOM_AIBOT_BOT_ID"):
        Settings.load(None).wecom_aibot.check()
    monkeypatch.setenv("WECOM_AIBOT_BOT_ID", "aib-1")
    settings = Settings.load(None)
    settings.wecom_aibot.check()
    assert appconfig.stream_apps(settings) == [("wecom_aibot", "default")]
    bot = wiring.webhook_adapters(settings)[("wecom_aibot", "default")]
    assert isinstance(bot, WeComAiBotAdapter)
    assert bot.mode == "longconn"
    # bot doctor does not ask for a callback Token this mode has no use for.
    result = check_callback("wecom_aibot", "default", settings.wecom_aibot)
    assert result is not None
    assert result.status is Status.SKIP


def test_a_named_long_connection_app_of_bot_toml_needs_only_bot_id_and_secret(
    tmp_path: Path,
) -> None:
    from bot.settings import apps as appconfig

    toml = tmp_path / "bot.toml"
    toml.write_text(
        '[wecom_aibot.sales]\nmode = "longconn"\nbot_id = "aib-sales"\nsecret = "s3cret"\n',
        encoding="utf-8",
    )
    settings = Settings.load(None, core={"config_file": toml})
    assert ("wecom_aibot", "sales") in appconfig.stream_apps(settings)
    sales = wiring.webhook_adapters(settings)[("wecom_aibot", "sales")]
    assert isinstance(sales, WeComAiBotAdapter)
    assert (sales.app, sales.mode, sales._bot_id) == ("sales", "longconn", "aib-sales")
    # Without its secret the app is still refused, naming what is missing.
    toml.write_text(
        '[wecom_aibot.sales]\nmode = "longconn"\nbot_id = "aib-sales"\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="secret"):
        Settings.load(None, core={"config_file": toml})


def test_unknown_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WECOM_AIBOT_MODE", "polling")
    with pytest.raises((ConfigError, ValueError)):
        Settings.load(None)
