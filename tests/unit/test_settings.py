import pytest

from bot.errors import ConfigError
from bot.settings import Settings

KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
WECOM = {
    "WECOM_CORP_ID": "ww1234567890",
    "WECOM_AGENT_ID": "1000002",
    "WECOM_SECRET": "s3cr3t-value-abc",
    "WECOM_TOKEN": "tok-value-xyz",
    "WECOM_AES_KEY": KEY,
}


def test_defaults_need_nothing() -> None:
    s = Settings.load(None)
    assert s.core.port == 8080
    assert s.core.effective_database_url() == "sqlite:///data/bot.db"
    assert not s.wecom.enabled
    assert not s.vllm.enabled
    assert s.dashscope.model == "qwen-plus"


def test_full_wecom_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in WECOM.items():
        monkeypatch.setenv(name, value)
    s = Settings.load(None)
    assert s.wecom.enabled
    assert s.wecom.corp_id == "ww1234567890"
    assert s.wecom.api_base == "https://qyapi.weixin.qq.com"


@pytest.mark.parametrize("missing", sorted(WECOM))
def test_half_configured_wecom_names_the_missing_variable(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    for name, value in WECOM.items():
        if name != missing:
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        Settings.load(None)
    assert missing in str(info.value)
    for name, value in WECOM.items():
        if name in {"WECOM_SECRET", "WECOM_TOKEN", "WECOM_AES_KEY"}:
            assert value not in str(info.value)


def test_bad_aes_key_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in WECOM.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WECOM_AES_KEY", "short-secret-key-value")
    with pytest.raises(ConfigError) as info:
        Settings.load(None)
    assert "WECOM_AES_KEY" in str(info.value)
    assert "short-secret-key-value" not in str(info.value)


def test_placeholder_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in WECOM.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WECOM_SECRET", "changeme")
    with pytest.raises(ConfigError, match="WECOM_SECRET"):
        Settings.load(None)


def test_vllm_needs_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_BASE_URL", "http://127.0.0.1:8000/v1")
    with pytest.raises(ConfigError, match="VLLM_MODEL"):
        Settings.load(None)


def test_dashscope_base_url_without_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHSCOPE_BASE_URL", "http://127.0.0.1:9/api/v1")
    with pytest.raises(ConfigError, match="DASHSCOPE_API_KEY"):
        Settings.load(None)


def test_env_file_is_read(tmp_path) -> None:
    env = tmp_path / ".env"
    env.write_text("BOT_PORT=9091\nDASHSCOPE_API_KEY=sk-test-123\n", encoding="utf-8")
    s = Settings.load(env)
    assert s.core.port == 9091
    assert s.dashscope.enabled


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in WECOM.items():
        monkeypatch.setenv(name, value)
    s = Settings.load(None)
    assert WECOM["WECOM_SECRET"] not in repr(s.wecom)
    assert KEY not in repr(s.wecom)


def test_wecom_kf_shares_the_corp_id_without_switching_on_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WECOM_CORP_ID", "ww1234567890")
    monkeypatch.setenv("WECOM_KF_SECRET", "kf-secret-value")
    monkeypatch.setenv("WECOM_KF_TOKEN", "kf-token-value")
    monkeypatch.setenv("WECOM_KF_AES_KEY", KEY)
    s = Settings.load(None)
    assert s.wecom_kf.enabled
    assert s.wecom_kf.corp_id == "ww1234567890"
    assert not s.wecom.enabled


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"DINGTALK_APP_KEY": "dingabc"}, "DINGTALK_APP_SECRET"),
        (
            {
                "DINGTALK_APP_KEY": "dingabc",
                "DINGTALK_APP_SECRET": "s3cret-x",
                "DINGTALK_TOKEN": "tok-abc",
            },
            "DINGTALK_AES_KEY",
        ),
        (
            {"FEISHU_APP_ID": "cli_abc", "FEISHU_APP_SECRET": "s3cret-x"},
            "FEISHU_VERIFICATION_TOKEN",
        ),
        ({"WECHAT_MP_APP_ID": "wx123", "WECHAT_MP_TOKEN": "tok-abc"}, "WECHAT_MP_APP_SECRET"),
    ],
)
def test_other_platforms_name_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], missing: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=missing):
        Settings.load(None)


def test_wechat_api_base_uses_the_design_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WECHAT_API_BASE", "http://127.0.0.1:9/wx")
    assert Settings.load(None).wechat_mp.api_base == "http://127.0.0.1:9/wx"
