"""Per-token scopes of the admin API over HTTP: each route asks for its scope, a token without
it gets 403 naming it, BOT_ADMIN_TOKEN keeps every scope, and scoped tokens alone switch
the API on."""

from __future__ import annotations

import json
from typing import Any

import pytest

ADMIN = "legacy-" + "a" * 24
KB_ONLY = "kb-" + "k" * 24
HANDOFF_ONLY = "hand-" + "h" * 24
CRM = "crm-" + "c" * 24
TOKENS = [
    {"name": "kb-sync", "token": KB_ONLY, "scopes": ["knowledge"]},
    {"name": "desk", "token": HANDOFF_ONLY, "scopes": ["handoff"]},
    {"name": "crm", "token": CRM, "scopes": ["bindings", "usage"]},
]
# One cheap request per scope: (method, path, scope it needs).
ROUTES = [
    ("GET", "/api/kb/default/documents", "knowledge"),
    ("GET", "/api/kb/jobs/nope", "knowledge"),
    ("GET", "/api/autoreply/rules", "rules"),
    ("GET", "/api/bindings", "bindings"),
    ("DELETE", "/api/bindings/wecom/default/nobody", "bindings"),
    ("GET", "/api/handoffs", "handoff"),
    ("GET", "/api/conversations/1", "handoff"),
    ("POST", "/api/conversations/1/release", "handoff"),
    ("GET", "/api/usage", "usage"),
]
SCOPES_OF = {KB_ONLY: {"knowledge"}, HANDOFF_ONLY: {"handoff"}, CRM: {"bindings", "usage"}}


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def api(make_settings, make_client) -> Any:
    settings = make_settings(core={"admin_token": ADMIN, "admin_tokens": json.dumps(TOKENS)})
    return await make_client(settings)


async def test_each_route_needs_its_scope(api) -> None:
    for token, scopes in SCOPES_OF.items():
        for method, path, scope in ROUTES:
            resp = await api.request(method, path, headers=_auth(token))
            if scope in scopes:
                assert resp.status not in (401, 403), (token, path, await resp.text())
            else:
                assert resp.status == 403, (token, path)
                body = await resp.json()
                assert body["scope"] == scope
                assert scope in body["error"]


async def test_the_single_token_still_reaches_everything(api) -> None:
    for method, path, _ in ROUTES:
        resp = await api.request(method, path, headers=_auth(ADMIN))
        assert resp.status not in (401, 403), (path, await resp.text())
    usage = await api.get("/api/usage", headers=_auth(ADMIN))
    assert usage.status == 200


async def test_a_scoped_token_does_its_job(api) -> None:
    created = await api.post(
        "/api/bindings",
        json={"platform": "wecom", "app": "default", "user_id": "zs", "customer_id": "C1"},
        headers=_auth(CRM),
    )
    assert created.status == 201, await created.text()
    listed = await api.get("/api/bindings?user=zs", headers=_auth(CRM))
    assert [b["customer_id"] for b in (await listed.json())["bindings"]] == ["C1"]
    assert (await api.get("/api/usage?days=1", headers=_auth(CRM))).status == 200


@pytest.mark.parametrize("given", ["", "Bearer nope", f"Bearer {KB_ONLY}x", f"Basic {KB_ONLY}"])
async def test_an_unknown_token_is_401_whatever_route(api, given) -> None:
    resp = await api.get("/api/kb/default/documents", headers={"Authorization": given})
    assert resp.status == 401
    assert (await resp.json())["error"] == "unauthorized"


async def test_scoped_tokens_alone_switch_the_api_on(make_settings, make_client) -> None:
    only = json.dumps(TOKENS[:1])
    client = await make_client(make_settings(core={"admin_tokens": only}))
    assert (await client.get("/api/kb/default/documents", headers=_auth(KB_ONLY))).status == 200
    assert (await client.get("/api/usage", headers=_auth(KB_ONLY))).status == 403
    off = await make_client(make_settings())
    resp = await off.get("/api/usage", headers=_auth(KB_ONLY))
    assert resp.status == 503
    assert "BOT_ADMIN_TOKENS" in (await resp.json())["error"]


async def test_the_transcript_page_opens_for_handoff_tokens_only(api) -> None:
    path = "/api/conversations/999/transcript"
    assert (await api.get(path, headers=_auth(HANDOFF_ONLY))).status == 404  # let in, none
    assert (await api.get(path, headers=_auth(ADMIN))).status == 404
    assert (await api.get(path, headers=_auth(KB_ONLY))).status == 403
