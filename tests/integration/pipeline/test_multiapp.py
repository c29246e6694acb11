"""Several apps per platform (bot.toml) end to end: webhook → Redis/Celery → agent → send.

Two named WeCom apps and one named Feishu app come from a bot.toml whose secrets are
``${ENV}`` references; the default WeCom app still comes from the environment. Each app has
its own fake platform API, so the test sees which credentials every reply used.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from adapters.dingtalk import simulate as dingtalk_simulate
from adapters.feishu import simulate as feishu_simulate
from bot import keys
from bot.db.engine import get_engine
from bot.errors import ConfigError
from bot.stream import runner as stream
from knowledge import store
from tests.fakes.base import serve
from tests.fakes.dingtalk_api import DingTalkFakeState, make_dingtalk_app
from tests.fakes.dingtalk_stream import GatewayState, add_gateway_routes
from tests.fakes.feishu_api import FeishuFakeState, make_feishu_app
from tests.fakes.wecom_api import WeComFakeState, make_wecom_app
from tests.integration.conftest import WeComApp, wait_for

SALES_PERSONA = "你是销售顾问小美，只谈产品和价格。"
SALES_FAQ = "青禾旗舰款售价 1999 元，本周赠送原装保护套"
HR_TOKEN = "hr-verification-token"
HR_KEY = "hr encrypt key"


def new_wecom_app(agent_id: str) -> WeComApp:
    alphabet = string.ascii_letters + string.digits
    return WeComApp(
        corp_id="ww" + secrets.token_hex(5),
        agent_id=agent_id,
        secret=secrets.token_urlsafe(16),
        token=secrets.token_urlsafe(8),
        aes_key="".join(secrets.choice(alphabet) for _ in range(43)),
    )


@dataclass
class Named:
    """A named WeCom app with its own fake API."""

    app: WeComApp
    api: WeComFakeState
    url: str


@pytest.fixture
def named_apps() -> Iterator[dict[str, Any]]:
    sales, support = new_wecom_app("1000005"), new_wecom_app("1000006")
    states = {
        name: WeComFakeState(corp_id=a.corp_id, secret=a.secret, agent_id=int(a.agent_id))
        for name, a in (("sales", sales), ("support", support))
    }
    hr = FeishuFakeState(
        app_id="cli_hr", app_secret=secrets.token_urlsafe(12), bot_open_id="ou_hr_bot"
    )
    with (
        serve(make_wecom_app(states["sales"])) as sales_url,
        serve(make_wecom_app(states["support"])) as support_url,
        serve(make_feishu_app(hr)) as hr_url,
    ):
        yield {
            "sales": Named(sales, states["sales"], sales_url),
            "support": Named(support, states["support"], support_url),
            "hr": (hr, hr_url),
        }


def write_config(path: Path, named: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """bot.toml with secrets as ${ENV} references, set in this process's environment."""
    lines = []
    for name in ("sales", "support"):
        n: Named = named[name]
        monkeypatch.setenv(f"TEST_{name.upper()}_SECRET", n.app.secret)
        monkeypatch.setenv(f"TEST_{name.upper()}_AES_KEY", n.app.aes_key)
        lines += [
            f"[wecom.{name}]",
            f'corp_id = "{n.app.corp_id}"',
            f'agent_id = "{n.app.agent_id}"',
            f'secret = "${{TEST_{name.upper()}_SECRET}}"',
            f'token = "{n.app.token}"',
            f'aes_key = "${{TEST_{name.upper()}_AES_KEY}}"',
            f'api_base = "{n.url}"',
            "",
        ]
    at = lines.index("[wecom.support]") - 1
    lines[at:at] = [f'persona = "{SALES_PERSONA}"', 'kb_names = ["sales_kb"]']
    hr, hr_url = named["hr"]
    monkeypatch.setenv("TEST_HR_SECRET", hr.app_secret)
    lines += [
        "[feishu.hr]",
        f'app_id = "{hr.app_id}"',
        'app_secret = "${TEST_HR_SECRET}"',
        f'verification_token = "{HR_TOKEN}"',
        f'encrypt_key = "{HR_KEY}"',
        f'api_base = "{hr_url}"',
        f'bot_open_id = "{hr.bot_open_id}"',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
async def stack(
    make_settings, make_client, celery_worker, fakes, wecom_app, named_apps, tmp_path, monkeypatch
):
    config = tmp_path / "bot.toml"
    write_config(config, named_apps, monkeypatch)
    settings = make_settings(**fakes.sections(wecom_app), core={"config_file": config})
    # The sales app's own knowledge base, in the database (the default app has none there).
    faq = tmp_path / "sales_faq.csv"
    faq.write_text(f"question,answer,similar\n旗舰款多少钱,{SALES_FAQ}。,旗舰款价格\n", "utf-8")
    with Session(get_engine(settings.core.effective_database_url())) as session:
        store.ingest(session, "sales_kb", faq)
    client = await make_client(settings)
    celery_worker(settings)
    return client


async def post_wecom(client, path: str, app: WeComApp, text: str, **kw: Any) -> int:
    query, body = app.callback(text, **kw)
    resp = await client.post(path, params=query, data=body)
    return resp.status


def system_prompt_of(request: Any) -> str:
    return next(m["content"] for m in request.json["messages"] if m["role"] == "system")


async def test_webhooks_are_checked_with_their_own_apps_credentials(
    stack, named_apps, fakes
) -> None:
    sales: Named = named_apps["sales"]
    support: Named = named_apps["support"]
    # Signed with the support app's token/key: refused on the sales URL, and vice versa.
    assert await post_wecom(stack, "/webhooks/wecom/sales", support.app, "你好") == 401
    assert await post_wecom(stack, "/webhooks/wecom/support", sales.app, "你好") == 401
    assert await post_wecom(stack, "/webhooks/wecom", sales.app, "你好") == 401
    assert await post_wecom(stack, "/webhooks/wecom/nosuchapp", sales.app, "你好") == 404
    await asyncio.sleep(1.0)
    assert fakes.vllm.matching("/chat/completions") == []  # nothing was queued
    assert sales.api.sent == support.api.sent == fakes.wecom.sent == []


async def test_named_app_answers_with_its_own_token_and_persona(
    stack, named_apps, fakes, wecom_app
) -> None:
    sales: Named = named_apps["sales"]
    support: Named = named_apps["support"]
    status = await post_wecom(stack, "/webhooks/wecom/sales", sales.app, "旗舰款多少钱", user="ww")
    assert status == 200
    await wait_for(lambda: len(sales.api.sent) == 1)
    sent = sales.api.sent[0]
    assert (sent["touser"], sent["content"]) == ("ww", "ANSWER: 旗舰款多少钱")
    # The sales fake issued the token the reply used, to the sales corp id and secret.
    assert sent["token"] in sales.api.issued
    gettoken = sales.api.matching("/cgi-bin/gettoken")[0].query
    assert (gettoken["corpid"], gettoken["corpsecret"]) == (sales.app.corp_id, sales.app.secret)
    assert support.api.requests == []
    assert fakes.wecom.requests == []
    # The app's persona replaced the default one; its knowledge base was searched.
    request = fakes.vllm.matching("/chat/completions")[0]
    assert SALES_PERSONA in system_prompt_of(request)
    assert SALES_FAQ in json.dumps(request.json["messages"], ensure_ascii=False)

    # The env-configured default app still works, with its own credentials and persona.
    assert await post_wecom(stack, "/webhooks/wecom", wecom_app, "怎么退货", user="lisi") == 200
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    assert fakes.wecom.sent[0]["touser"] == "lisi"
    assert fakes.wecom.sent[0]["token"] in fakes.wecom.issued
    request = fakes.vllm.matching("/chat/completions")[1]
    assert SALES_PERSONA not in system_prompt_of(request)
    assert SALES_FAQ not in json.dumps(request.json["messages"], ensure_ascii=False)
    assert "7 天无理由退货" in json.dumps(request.json["messages"], ensure_ascii=False)

    # A support message: its own fake, and the sales app's token is not reused.
    assert await post_wecom(stack, "/webhooks/wecom/support", support.app, "在吗", user="z") == 200
    await wait_for(lambda: len(support.api.sent) == 1)
    assert support.api.sent[0]["token"] in support.api.issued
    assert len(sales.api.sent) == 1


async def test_named_feishu_app_end_to_end(stack, named_apps) -> None:
    hr, _ = named_apps["hr"]
    headers, body = feishu_simulate.build_message(
        "年假怎么请",
        app_id=hr.app_id,
        verification_token=HR_TOKEN,
        encrypt_key=HR_KEY,
        user_open_id="ou_lisi",
        message_id="om_hr_1",
        chat_id="oc_p2p_lisi",
        event_id=secrets.token_hex(16),
        now=int(time.time()),
        nonce=secrets.token_hex(8),
        iv=os.urandom(16),
        group=False,
        mention_bot=False,
        bot_open_id=hr.bot_open_id,
    )
    # The default Feishu app is not configured: only the named URL takes it.
    assert (await stack.post("/webhooks/feishu", data=body, headers=headers)).status == 404
    resp = await stack.post("/webhooks/feishu/hr", data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    assert json.loads(await resp.text()) == {}
    await wait_for(lambda: len(hr.sent) == 1)
    assert (hr.sent[0]["reply_to"], hr.sent[0]["text"]) == ("om_hr_1", "ANSWER: 年假怎么请")
    assert hr.sent[0]["token"] in hr.issued
    token_request = hr.matching("/tenant_access_token/internal")[0].json
    assert token_request == {"app_id": hr.app_id, "app_secret": hr.app_secret}


@pytest.fixture
def ops_stream(make_settings, celery_worker, fakes, wecom_app, tmp_path, monkeypatch):
    """A named DingTalk app in Stream mode from bot.toml, with its fake API and gateway."""
    state = DingTalkFakeState(app_key="dingops", app_secret=secrets.token_urlsafe(16))
    gateway = GatewayState(client_id=state.app_key, client_secret=state.app_secret)
    api = make_dingtalk_app(state)
    add_gateway_routes(api, gateway)
    with serve(api) as url:
        monkeypatch.setenv("TEST_OPS_SECRET", state.app_secret)
        config = tmp_path / "bot.toml"
        config.write_text(
            "[dingtalk.ops]\n"
            f'app_key = "{state.app_key}"\n'
            'app_secret = "${TEST_OPS_SECRET}"\n'
            f'robot_code = "{state.robot_code}"\n'
            f'api_base = "{url}"\n'
            'oapi_base = "http://127.0.0.1"\n'
            "stream = true\n",
            encoding="utf-8",
        )
        models = fakes.sections(wecom_app)
        settings = make_settings(
            vllm=models["vllm"], dashscope=models["dashscope"], core={"config_file": config}
        )
        celery_worker(settings)
        yield settings, state, gateway, url


@pytest.mark.timeout(60)
async def test_named_dingtalk_app_holds_its_own_stream(ops_stream, make_client, aredis) -> None:
    settings, state, gateway, url = ops_stream
    with pytest.raises(ConfigError, match="DingTalk app default is not configured"):
        await stream.run_dingtalk(settings, asyncio.Event())
    client = await make_client(settings)
    assert (await (await client.get("/readyz")).json())["dingtalk_ops_stream"].startswith("down")
    stop = asyncio.Event()
    task = asyncio.create_task(
        stream.run_dingtalk(
            settings, stop, app="ops", lease_ttl_s=1.5, heartbeat_s=None, status_every_s=0.2
        )
    )
    try:
        await wait_for(lambda: gateway.live() == 1)
        body = dingtalk_simulate.robot_body(
            "运维值班表在哪",
            msg_id="msgOps-1==",
            staff_id="manager4220",
            conversation_id="cidOps==",
            session_webhook=state.session_url(url),
            create_at_ms=int(time.time() * 1000),
            robot_code=state.robot_code,
        )
        gateway.push_robot_message(body)
        await wait_for(lambda: len(state.sent) == 1)
        assert state.sent[0]["text"] == "ANSWER: 运维值班表在哪"
        # The lease and the status are the ops app's own.
        assert await aredis.exists(keys.stream_holder("dingtalk", "ops")) == 1
        assert await aredis.exists(keys.stream_holder("dingtalk", "default")) == 0
        status = await stream.read_status(aredis, "dingtalk", "ops")
        assert status is not None
        assert status["connected"] is True
        resp = await client.get("/readyz")
        assert (await resp.json())["dingtalk_ops_stream"] == "ok"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_bot_simulate_posts_to_the_named_app(stack, named_apps, tmp_path, fakes) -> None:
    from tests.integration.deploy.test_cli import _env, _run_cli

    sales: Named = named_apps["sales"]
    # The CLI reads the same bot.toml (its ${ENV} secrets come from this environment).
    env = _env(BOT_CONFIG_FILE=str(tmp_path / "bot.toml"))
    base = str(stack.make_url("")).rstrip("/")
    args = ("simulate", "wecom", "旗舰款多少钱", "--app", "sales", "--user", "sim", "--url", base)
    code, out = await _run_cli(env, *args)
    assert code == 0, out
    assert "POST /webhooks/wecom/sales -> 200" in out
    await wait_for(lambda: len(sales.api.sent) == 1)
    assert sales.api.sent[0]["touser"] == "sim"
    assert fakes.wecom.sent == []
    code, out = await _run_cli(env, "simulate", "wecom", "你好", "--app", "nosuch", "--url", base)
    assert code == 2
    assert "wecom app nosuch is not configured" in out
