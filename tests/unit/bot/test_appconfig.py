"""bot.toml: several apps per platform, `${ENV}` substitution and clear errors."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from adapters.base import WebhookRequest
from adapters.feishu.adapter import FeishuAdapter
from adapters.wecom import simulate as wecom_simulate
from adapters.wecom.adapter import WeComAdapter
from bot import wiring
from bot.cli.main import _print_welcome, _webhook_apps
from bot.errors import ConfigError, WebhookError
from bot.settings import FeishuSettings, Settings, WeChatMPSettings, WeComSettings
from bot.settings import apps as appconfig

AES_A = "a" * 43
AES_B = "B1" * 21 + "c"
SALES = f"""
[wecom.sales]
corp_id = "wwsales"
agent_id = "1000005"
secret = "${{TEST_SALES_SECRET}}"
token = "sales-token"
aes_key = "{AES_A}"
api_base = "http://127.0.0.1:9"
kb_names = ["sales", "common"]
persona = "你是销售顾问小美"

[feishu.hr]
app_id = "cli_hr"
app_secret = "hr-secret-${{TEST_HR_SUFFIX}}"
verification_token = "hr-verify"
"""
ENV_WECOM = {
    "WECOM_CORP_ID": "wwdefault",
    "WECOM_AGENT_ID": "1000002",
    "WECOM_SECRET": "default-secret",
    "WECOM_TOKEN": "default-token",
    "WECOM_AES_KEY": AES_B,
}


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "bot.toml"
    path.write_text(text, encoding="utf-8")
    return Settings.load(None, core={"config_file": path})


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SALES_SECRET", "s3cret-from-env")
    monkeypatch.setenv("TEST_HR_SUFFIX", "xyz")


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_named_apps_with_env_substitution(tmp_path: Path, env: None) -> None:
    settings = load(tmp_path, SALES)
    sales = appconfig.section(settings, "wecom", "sales")
    assert isinstance(sales, WeComSettings)
    assert sales.secret.get_secret_value() == "s3cret-from-env"
    hr = appconfig.section(settings, "feishu", "hr")
    assert isinstance(hr, FeishuSettings)
    assert hr.app_secret.get_secret_value() == "hr-secret-xyz"
    options = appconfig.options(settings, "wecom", "sales")
    assert options.kb_names == ("sales", "common")
    assert options.persona == "你是销售顾问小美"
    assert appconfig.options(settings, "feishu", "hr") == appconfig.AppOptions()
    # Nothing configured the default apps: only the named ones exist.
    assert [(p, a) for p, a, _ in appconfig.configured(settings)] == [
        ("wecom", "sales"),
        ("feishu", "hr"),
    ]


def test_default_app_from_env_beside_named_apps(
    tmp_path: Path, env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV_WECOM.items():
        monkeypatch.setenv(name, value)
    settings = load(tmp_path, SALES)
    assert appconfig.app_names(settings, "wecom") == ["default", "sales"]
    adapters = wiring.webhook_adapters(settings)
    default, sales = adapters[("wecom", "default")], adapters[("wecom", "sales")]
    assert isinstance(default, WeComAdapter)
    assert isinstance(sales, WeComAdapter)
    # Each adapter checks its own app's signature and key; nothing is inherited from env.
    now = int(time.time())
    query, body = wecom_simulate.build_callback(
        "你好",
        corp_id="wwsales",
        agent_id="1000005",
        token="sales-token",
        aes_key=AES_A,
        from_user="zhangsan",
        msg_id="1001",
        create_time=now,
        timestamp=str(now),
        nonce="42",
        random_prefix=b"0" * 16,
    )
    request = WebhookRequest(method="POST", query=query, headers={}, body=body)
    message = sales.handle(request, now=now).message
    assert message is not None
    assert (message.app, message.text) == ("sales", "你好")
    with pytest.raises(WebhookError):
        default.handle(request, now=now)
    assert default.token_key != sales.token_key  # two apps never share an access token
    assert isinstance(adapters[("feishu", "hr")], FeishuAdapter)
    assert ("feishu", "default") not in adapters
    # `bot up` lists every app's URL (and the unconfigured defaults).
    listed = _webhook_apps(settings)
    for expected in [("wecom", "sales"), ("wecom", "default"), ("feishu", "hr")]:
        assert expected in listed
    assert ("wechat_mp", "default") in listed


def test_default_table_defines_the_default_app(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        """
        [wechat_mp.default]
        app_id = "wxdefault"
        app_secret = "mp-secret"
        token = "mp-token"
        welcome_text = "欢迎关注"
        """,
    )
    assert settings.wechat_mp.enabled
    assert settings.wechat_mp.app_id == "wxdefault"
    assert settings.wechat_mp.welcome_text == "欢迎关注"


def test_default_table_conflicting_with_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV_WECOM.items():
        monkeypatch.setenv(name, value)
    message = error_of(
        tmp_path,
        f"""
        [wecom.default]
        corp_id = "wwother"
        agent_id = "1"
        secret = "x1"
        token = "t1"
        aes_key = "{AES_A}"
        """,
    )
    assert "[wecom.default] conflicts with the WECOM_* environment variables" in message


def test_default_table_with_options_only_applies_to_the_env_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV_WECOM.items():
        monkeypatch.setenv(name, value)
    settings = load(tmp_path, '[wecom.default]\npersona = "默认客服"\nkb_names = "a, b"\n')
    assert settings.wecom.corp_id == "wwdefault"
    assert appconfig.options(settings, "wecom", "default").persona == "默认客服"
    assert appconfig.options(settings, "wecom", "default").kb_names == ("a", "b")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[wecom.Sales]\ncorp_id = "x"\n', "[wecom.Sales]: app names are 1-32 of a-z"),
        ('[wecom."a b"]\ncorp_id = "x"\n', "app names are 1-32"),
        (f'[wecom.{"x" * 33}]\ncorp_id = "x"\n', "app names are 1-32"),
        ('[slack.team]\ntoken = "x"\n', "[slack]: unknown platform"),
        ('[wecom]\ncorp_id = "x"\n', "key corp_id: not an app table"),
        ('[feishu.hr]\napp_id = "cli"\napp_secrett = "x"\n', "unknown keys app_secrett"),
        ("[feishu.hr\n", "not valid TOML"),
        ('[feishu.hr]\nkb_names = [1, 2]\napp_id = "x"\n', "kb_names: must be a list"),
    ],
)
def test_bad_tables_are_refused_clearly(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(tmp_path, text)
    assert str(tmp_path / "bot.toml") in message
    assert expected in message


def test_half_configured_app_names_the_missing_keys_never_values(tmp_path: Path) -> None:
    message = error_of(
        tmp_path, '[wecom.sales]\ncorp_id = "wwsales"\nsecret = "very-secret-value"\n'
    )
    assert "bot.toml [wecom.sales] is partly configured" in message
    assert "missing: agent_id, token, aes_key" in message
    assert "very-secret-value" not in message
    # 微信客服 needs its own corp id in a table (env shares WECOM_CORP_ID).
    message = error_of(
        tmp_path, f'[wecom_kf.after_sales]\nsecret = "s"\ntoken = "t"\naes_key = "{AES_A}"\n'
    )
    assert "[wecom_kf.after_sales] is partly configured; missing: corp_id" in message


def test_invalid_values_are_described_without_echoing_them(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        '[wecom.sales]\ncorp_id = "ww"\nagent_id = "1"\nsecret = "s"\ntoken = "t"\n'
        'aes_key = "short-secret-key"\n',
    )
    assert "[wecom.sales] aes_key: Value error, WECOM_AES_KEY must be the 43-character" in message
    assert "short-secret-key" not in message
    message = error_of(
        tmp_path,
        '[dingtalk.ops]\napp_key = "k"\napp_secret = "s"\ntoken = "only-the-token"\n',
    )
    assert "[dingtalk.ops]: DINGTALK event subscription is partly configured" in message


def test_missing_env_reference_names_file_table_key_and_variable(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[feishu.hr]\napp_id = "cli"\napp_secret = "${NOT_SET_HR}"\n')
    assert "bot.toml [feishu.hr] app_secret" in message
    assert "NOT_SET_HR is not set" in message


def test_env_reference_reads_the_dotenv_file(tmp_path: Path) -> None:
    dotenv = tmp_path / "test.env"
    dotenv.write_text("HR_SECRET_IN_DOTENV=from-dotenv\n", encoding="utf-8")
    path = tmp_path / "bot.toml"
    path.write_text(
        '[feishu.hr]\napp_id = "cli"\napp_secret = "${HR_SECRET_IN_DOTENV}"\n'
        'verification_token = "v"\n',
        encoding="utf-8",
    )
    settings = Settings.load(dotenv, core={"config_file": path})
    hr = appconfig.section(settings, "feishu", "hr")
    assert isinstance(hr, FeishuSettings)
    assert hr.app_secret.get_secret_value() == "from-dotenv"


def test_config_file_default_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings.load(None).apps == {}  # no ./bot.toml: nothing extra
    (tmp_path / "bot.toml").write_text(
        '[feishu.hr]\napp_id = "cli"\napp_secret = "s"\nverification_token = "v"\n',
        encoding="utf-8",
    )
    assert ("feishu", "hr") in Settings.load(None).apps  # ./bot.toml is read by default
    monkeypatch.setenv("BOT_CONFIG_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match=r"BOT_CONFIG_FILE: .*nope\.toml does not exist"):
        Settings.load(None)


def test_bot_up_prints_every_apps_webhook_url(
    tmp_path: Path, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _print_welcome(load(tmp_path, SALES), sandbox=False, redis_url="redis://127.0.0.1:6379/0")
    out = capsys.readouterr().out
    assert "http://127.0.0.1:8080/webhooks/wecom/sales" in out
    assert "http://127.0.0.1:8080/webhooks/feishu/hr" in out
    assert "http://127.0.0.1:8080/webhooks/wechat_mp\n" in out


def test_the_example_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parents[3] / "examples" / "bot.toml"
    for name in re.findall(r"\$\{(\w+)\}", example.read_text(encoding="utf-8")):
        monkeypatch.setenv(name, AES_A if name.endswith("AES_KEY") else f"value-of-{name}")
    settings = Settings.load(None, core={"config_file": example})
    assert sorted(settings.apps) == [
        ("dingtalk", "ops"),
        ("feishu", "hr"),
        ("wechat_mp", "brand2"),
        ("wecom", "sales"),
        ("wecom_kf", "after_sales"),
    ]
    mp = appconfig.section(settings, "wechat_mp", "brand2")
    assert isinstance(mp, WeChatMPSettings)
    assert mp.welcome_text.startswith("欢迎关注")
    assert appconfig.options(settings, "feishu", "hr").system_prompt.startswith(
        "你是公司的人事助手"
    )
