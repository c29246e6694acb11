"""HANDOFF_* settings: defaults, and clear errors for a half-configured group notice."""

from __future__ import annotations

import pytest

from bot.errors import ConfigError
from bot.settings import Settings


def test_defaults_hand_over_without_a_group_notice() -> None:
    settings = Settings.load(None)
    assert settings.handoff.active
    assert (settings.handoff.repeat_count, settings.handoff.low_confidence_turns) == (3, 2)
    assert settings.handoff.idle_release_s == 1800
    assert settings.handoff.notify_kind == ""


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANDOFF_NOTIFY_KIND", "feishu")
    monkeypatch.setenv("HANDOFF_NOTIFY_URL", "https://open.feishu.cn/open-apis/bot/v2/hook/x")
    monkeypatch.setenv("HANDOFF_NOTIFY_SECRET", "s3cret")
    monkeypatch.setenv("HANDOFF_IDLE_RELEASE_S", "60")
    monkeypatch.setenv("HANDOFF_ENABLED", "false")
    monkeypatch.setenv("BOT_PUBLIC_URL", "https://bot.example.com")
    handoff = Settings.load(None).handoff
    assert handoff.notify_kind == "feishu"
    assert handoff.notify_secret.get_secret_value() == "s3cret"
    assert (handoff.idle_release_s, handoff.active) == (60, False)
    assert handoff.public_url == "https://bot.example.com"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"notify_kind": "slack", "notify_url": "http://x"}, "wecom, dingtalk or feishu"),
        ({"notify_kind": "wecom"}, "missing: HANDOFF_NOTIFY_URL"),
        ({"notify_url": "http://x"}, "missing: HANDOFF_NOTIFY_KIND"),
    ],
)
def test_a_half_configured_notice_is_a_config_error(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(None, handoff=section)


def test_queue_texts_and_the_wait_alert(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.handoff.waiting import with_position

    defaults = Settings.load(None).handoff
    assert (defaults.wait_alert_s, defaults.waiting_every_s) == (120, 60)
    assert with_position(defaults.notice_text, 3) == "已为您转接人工客服，当前排队第 3 位，请稍候。"
    monkeypatch.setenv("HANDOFF_WAIT_ALERT_S", "300")
    monkeypatch.setenv("HANDOFF_WAITING_TEXT", "稍等，前面还有 {position} 位 {客户}")
    handoff = Settings.load(None).handoff
    assert handoff.wait_alert_s == 300
    # Filled in, not str.format: an operator's other braces stay as they wrote them.
    assert with_position(handoff.waiting_text, 2) == "稍等，前面还有 2 位 {客户}"
