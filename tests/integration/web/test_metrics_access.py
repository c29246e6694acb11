"""Who may read /metrics: loopback and private addresses without a token, never a request
a proxy passed on (behind an Ingress every request comes from the proxy's private
address), and with BOT_METRICS_TOKEN only its holder."""

from __future__ import annotations

TOKEN = "metrics-" + "m" * 32


async def test_metrics_open_to_a_private_caller_but_not_through_a_proxy(
    make_settings, make_client
) -> None:
    client = await make_client(make_settings())
    assert (await client.get("/metrics")).status == 200  # loopback, no proxy
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        resp = await client.get("/metrics", headers={header: "203.0.113.9"})
        assert resp.status == 403, header
        assert "BOT_METRICS_TOKEN" in await resp.text()


async def test_metrics_token_is_required_and_odd_header_bytes_are_refused_cleanly(
    make_settings, make_client
) -> None:
    client = await make_client(make_settings(core={"metrics_token": TOKEN}))
    assert (await client.get("/metrics")).status == 401
    ok = await client.get(
        "/metrics", headers={"Authorization": f"Bearer {TOKEN}", "X-Forwarded-For": "1.2.3.4"}
    )
    assert ok.status == 200
    assert "bot_webhooks_total" in await ok.text() or "python_info" in await ok.text()
    # Latin-1 bytes in the header (not UTF-8): a 401, not a 500.
    odd = await client.get("/metrics", headers={"Authorization": "Bearer caf\xe9"})
    assert odd.status == 401
