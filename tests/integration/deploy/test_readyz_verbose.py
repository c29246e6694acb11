"""`/readyz?verbose=1`: the `bot doctor` checks over HTTP, for an admin token only."""

from __future__ import annotations

TOKEN = "ready-" + "k" * 32


async def test_verbose_readiness_lists_the_doctor_checks_for_admins_only(
    make_settings, make_client, fakes, wecom_app
) -> None:
    settings = make_settings(**fakes.sections(wecom_app), core={"admin_token": TOKEN})
    client = await make_client(settings)

    plain = await client.get("/readyz")
    assert plain.status == 200
    assert "doctor" not in await plain.json()  # probes stay cheap and say nothing of the setup
    assert (await client.get("/readyz?verbose=1")).status == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert (await client.get("/readyz?verbose=1", headers=wrong)).status == 401

    resp = await client.get("/readyz?verbose=1", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["status"] == "ok"
    checks = {c["name"]: c for c in body["doctor"]}
    for name in ("Redis", "wecom token", "wecom callback key", "model vllm"):
        assert checks[name]["status"] == "ok", checks[name]
    # PostgreSQL without pgvector works (search in memory): a warning, not a failure.
    assert checks["database"]["status"] in {"ok", "warn"}
    assert all(set(c) == {"status", "name", "detail", "fix_zh", "fix_en"} for c in checks.values())
    assert {c["status"] for c in checks.values()} <= {"ok", "fail", "warn", "skip"}
    assert TOKEN not in await resp.text()


async def test_verbose_readiness_says_what_to_fix_when_a_secret_is_wrong(
    make_settings, make_client, fakes, wecom_app
) -> None:
    fakes.wecom.secret = "the-platform-knows-another-secret"
    settings = make_settings(**fakes.sections(wecom_app), core={"admin_token": TOKEN})
    client = await make_client(settings)
    resp = await client.get("/readyz?verbose=1", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200  # the process can serve; the setup has a problem
    checks = {c["name"]: c for c in (await resp.json())["doctor"]}
    assert checks["wecom token"]["status"] == "fail"
    assert checks["wecom token"]["fix_zh"]
    assert checks["wecom token"]["fix_en"]
    assert "fake-secret" not in await resp.text()
