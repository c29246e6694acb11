"""Signing in and every refusal an operator can meet: wrong password, lockout, expiry,
a disabled account, a reset password, a post without CSRF token or from another site, a
page above one's role."""

from __future__ import annotations

import redis

from bot.console import accounts, audit
from tests.integration.console.conftest import PASSWORD


async def test_sign_in_lands_on_the_inbox_and_sets_a_strict_http_only_cookie(console) -> None:
    c = await console()
    c.add("wang", "agent")
    resp = await c.sign_in("wang")
    assert resp.status == 303
    assert resp.headers["Location"] == "/console/"
    cookie = resp.cookies["bot_console"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/console"
    page = await c.client.get("/console/")
    assert page.url.path == "/console/inbox"
    text = await page.text()
    assert "人工接待" in text
    assert "wang" in text
    assert page.headers["Cache-Control"] == "no-store"
    assert [(e.actor, e.action) for e in audit.recent(c.engine)] == [("wang", "login")]


async def test_unsigned_visitors_are_sent_to_the_sign_in_page(console) -> None:
    c = await console()
    resp = await c.client.get("/console/inbox", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/console/login?next=%2Fconsole%2Finbox"
    post = await c.client.post("/console/conversations/1/claim", allow_redirects=False)
    assert post.status == 401


async def test_wrong_password_then_lockout_with_a_clear_message(console) -> None:
    c = await console()
    c.add("li", "agent")
    for _ in range(3):  # the test's limit: 3 failures per username
        resp = await c.sign_in("li", "wrong password")
        assert resp.status == 401
        assert "用户名或密码错误" in await resp.text()
    locked = await c.sign_in("li")  # the right password no longer helps
    assert locked.status == 429
    assert "登录失败次数过多，请 1 分钟后再试" in await locked.text()
    # An unknown name fails the same way as a wrong password (no account enumeration).
    unknown = await c.sign_in("nobody", "whatever1")
    assert unknown.status == 401
    assert "用户名或密码错误" in await unknown.text()


async def test_a_sign_in_without_its_form_token_is_refused(console) -> None:
    c = await console()
    c.add("zhao", "admin")
    resp = await c.client.post(
        "/console/login", data={"username": "zhao", "password": PASSWORD}, allow_redirects=False
    )
    assert resp.status == 403
    assert "bot_console" not in resp.cookies


async def test_posts_need_the_session_csrf_token_and_the_same_origin(console) -> None:
    c = await console()
    c.add("zhao", "admin")
    await c.sign_in("zhao")
    data = {"username": "new1", "role": "agent", "password": "password123"}
    no_token = await c.client.post("/console/accounts", data=data, allow_redirects=False)
    assert no_token.status == 403
    assert "请求已拒绝" in await no_token.text()
    token = await c.csrf("/console/accounts")
    wrong = await c.client.post(
        "/console/accounts", data={**data, "csrf_token": token + "x"}, allow_redirects=False
    )
    assert wrong.status == 403
    other_site = await c.client.post(
        "/console/accounts",
        data={**data, "csrf_token": token},
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert other_site.status == 403
    assert accounts.get(c.engine, "new1") is None
    ok = await c.client.post(
        "/console/accounts", data={**data, "csrf_token": token}, allow_redirects=False
    )
    assert ok.status == 303
    assert accounts.get(c.engine, "new1") is not None


async def test_an_agent_cannot_open_admin_pages(console) -> None:
    c = await console()
    c.add("wang", "agent")
    await c.sign_in("wang")
    for path in ("/console/accounts", "/console/audit"):
        resp = await c.client.get(path)
        assert resp.status == 403
        assert "您的角色（agent）不能访问此页面" in await resp.text()
    token = await c.csrf()
    resp = await c.client.post(
        "/console/accounts",
        data={
            "username": "sneaky",
            "role": "admin",
            "password": "password123",
            "csrf_token": token,
        },
    )
    assert resp.status == 403
    assert accounts.get(c.engine, "sneaky") is None


async def test_an_expired_session_asks_to_sign_in_again(console, sync_redis) -> None:
    c = await console()
    c.add("wang", "agent")
    await c.sign_in("wang")
    assert (await c.client.get("/console/inbox")).status == 200
    for key in sync_redis.scan_iter("console:session:*"):
        sync_redis.delete(key)  # as if the idle timeout had passed
    resp = await c.client.get("/console/inbox")
    assert resp.url.path == "/console/login"
    assert "登录已过期，请重新登录" in await resp.text()


async def test_session_idle_expiry_is_set_in_redis(console, sync_redis: redis.Redis) -> None:
    c = await console()
    c.add("wang", "agent")
    await c.sign_in("wang")
    (key,) = list(sync_redis.scan_iter("console:session:*"))
    assert 3500 <= sync_redis.ttl(key) <= 3600  # CONSOLE_SESSION_IDLE_S
    assert not any(v.startswith(b"ey") for v in sync_redis.hvals(key))  # nothing but our fields


async def test_disabling_an_account_or_resetting_its_password_ends_its_sessions(
    console, make_client
) -> None:
    c = await console()
    c.add("boss", "admin")
    c.add("wang", "agent")
    agent_client = await make_client(c.settings)
    await c.sign_in("wang", client=agent_client)
    assert (await agent_client.get("/console/inbox")).url.path == "/console/inbox"
    await c.sign_in("boss")
    token = await c.csrf("/console/accounts")
    resp = await c.client.post(
        "/console/accounts/wang/password", data={"password": "a new one 42", "csrf_token": token}
    )
    assert "密码已重置" in await resp.text()
    assert (await agent_client.get("/console/inbox")).url.path == "/console/login"
    await c.sign_in("wang", "a new one 42", client=agent_client)
    assert (await agent_client.get("/console/inbox")).url.path == "/console/inbox"
    await c.client.post("/console/accounts/wang/disable", data={"csrf_token": token})
    assert (await agent_client.get("/console/inbox")).url.path == "/console/login"
    refused = await c.sign_in("wang", "a new one 42", client=agent_client)
    assert refused.status == 401
    actions = [e.action for e in audit.recent(c.engine, actor="boss")]
    assert actions[:2] == ["account.disable", "account.reset_password"]


async def test_the_last_admin_cannot_be_disabled(console) -> None:
    c = await console()
    c.add("boss", "admin")
    await c.sign_in("boss")
    token = await c.csrf("/console/accounts")
    resp = await c.client.post("/console/accounts/boss/disable", data={"csrf_token": token})
    assert resp.status == 409
    assert "last active admin" in await resp.text()


async def test_language_switches_to_english_and_stays(console) -> None:
    c = await console()
    page = await c.client.get("/console/login?lang=en")
    assert "Sign in" in await page.text()
    again = await c.client.get("/console/login")
    assert "Sign in" in await again.text()
    assert "登录" not in await again.text()
