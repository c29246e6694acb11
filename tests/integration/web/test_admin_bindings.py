"""The customer-binding admin API over real HTTP (aiohttp test server, SQLite, Redis)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from bot import wiring
from bot.db.engine import get_engine
from bot.settings import Settings

TOKEN = "admin-secret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(make_settings: Callable[..., Settings], make_client: Any) -> Any:
    settings = make_settings(core={"admin_token": TOKEN})
    return await make_client(settings)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/bindings"),
        ("POST", "/api/bindings"),
        ("POST", "/api/bindings/import"),
        ("DELETE", "/api/bindings/web/default/u1"),
    ],
)
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]
)
async def test_every_route_needs_the_token(
    client: Any, method: str, path: str, headers: dict[str, str]
) -> None:
    resp = await client.request(method, path, headers=headers, json={})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"


async def test_without_a_configured_token_the_api_is_off(
    make_settings: Callable[..., Settings], make_client: Any
) -> None:
    client = await make_client(make_settings())
    resp = await client.get("/api/bindings", headers=AUTH)
    assert resp.status == 503


async def test_create_list_delete(client: Any) -> None:
    body = {"platform": "wecom", "app": "", "user_id": "zhangsan", "customer_id": "C1001"}
    resp = await client.post("/api/bindings", json=body, headers=AUTH)
    assert resp.status == 201
    created = (await resp.json())["binding"]
    assert created["app"] == "default"
    assert created["source"] == "admin"
    await client.post(
        "/api/bindings",
        json={"platform": "web", "user_id": "w/1", "customer_id": "C1002"},
        headers=AUTH,
    )
    resp = await client.get("/api/bindings", params={"platform": "wecom"}, headers=AUTH)
    assert [b["user_id"] for b in (await resp.json())["bindings"]] == ["zhangsan"]
    resp = await client.get("/api/bindings", params={"user": "w/1"}, headers=AUTH)
    assert [b["customer_id"] for b in (await resp.json())["bindings"]] == ["C1002"]
    # Search a part of either id, any case; page newest first.
    resp = await client.get("/api/bindings", params={"q": "c100"}, headers=AUTH)
    assert [b["user_id"] for b in (await resp.json())["bindings"]] == ["w/1", "zhangsan"]
    resp = await client.get("/api/bindings", params={"limit": "1", "offset": "1"}, headers=AUTH)
    assert [b["user_id"] for b in (await resp.json())["bindings"]] == ["zhangsan"]
    for bad in ({"offset": "x"}, {"q": "x" * 65}):
        assert (await client.get("/api/bindings", params=bad, headers=AUTH)).status == 400
    resp = await client.delete("/api/bindings/web/default/w/1", headers=AUTH)
    assert resp.status == 200
    resp = await client.delete("/api/bindings/web/default/w/1", headers=AUTH)
    assert resp.status == 404
    resp = await client.get("/api/bindings", headers=AUTH)
    assert [b["user_id"] for b in (await resp.json())["bindings"]] == ["zhangsan"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1, 2], "send a JSON object"),
        ({"platform": "msn", "user_id": "u", "customer_id": "C1"}, "unknown platform"),
        ({"platform": "web", "user_id": "u"}, "customer_id is required"),
        ({"platform": "web", "user_id": 5, "customer_id": "C1"}, "must be strings"),
    ],
)
async def test_bad_bindings_are_400(client: Any, body: Any, message: str) -> None:
    resp = await client.post("/api/bindings", json=body, headers=AUTH)
    assert resp.status == 400
    assert message in (await resp.json())["error"]


async def test_csv_import_as_upload_and_as_body(
    client: Any, make_settings: Callable[..., Settings]
) -> None:
    form = aiohttp.FormData()
    form.add_field(
        "file",
        b"platform,app,user_id,customer_id\nwecom,,lisi,C1001\nfeishu,default,ou_9,C1003\n",
        filename="bindings.csv",
        content_type="text/csv",
    )
    resp = await client.post("/api/bindings/import", data=form, headers=AUTH)
    assert resp.status == 200
    assert await resp.json() == {"imported": 2}
    resp = await client.post(
        "/api/bindings/import",
        data="\ufeffplatform,user_id,customer_id\ndingtalk,staff1,C1004\n".encode(),
        headers={**AUTH, "Content-Type": "text/csv"},
    )
    assert await resp.json() == {"imported": 1}
    settings = make_settings(core={"admin_token": TOKEN})
    store = wiring.binding_store(settings, get_engine(settings.core.effective_database_url()))
    lisi = store.get("wecom", "default", "lisi")
    assert lisi is not None
    assert (lisi.customer_id, lisi.source) == ("C1001", "import")
    assert len(store.list()) == 3
    resp = await client.post(
        "/api/bindings/import",
        data=b"platform,user_id\nweb,x\n",
        headers={**AUTH, "Content-Type": "text/csv"},
    )
    assert resp.status == 400
    assert "missing columns: customer_id" in (await resp.json())["error"]
