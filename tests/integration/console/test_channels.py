"""The channels page over HTTP: the webhook URL to paste, when a customer last wrote, the last
failed send with the platform's error; the configuration with no secret in the page;
admins only."""

from __future__ import annotations

import re

from sqlmodel import Session, select

from bot.db.models import Delivery
from tests.integration.conftest import wait_for


def _failed(c) -> int:
    with Session(c.engine) as s:
        return len(s.exec(select(Delivery).where(Delivery.status == "failed")).all())


async def test_channels_show_where_to_point_the_platform_and_what_went_wrong(
    console, celery_worker, wecom_app, fakes
) -> None:
    c = await console(admin_token="tok-" + "x" * 30)
    celery_worker(c.settings)
    c.add("boss", "admin")
    await c.sign_in("boss")
    page = await (await c.client.get("/console/channels")).text()
    assert f"<code>{c.client.make_url('/webhooks/wecom')}</code>" in page
    assert "还没有" in page  # no customer message yet

    # WeCom refuses the answer for good (invalid user): the failure and its reason show.
    fakes.wecom.fail_next(5, status=200, body={"errcode": 81013, "errmsg": "user invalid"})
    query, body = wecom_app.callback("你好", user="wx-gone")
    assert (await c.client.post("/webhooks/wecom", params=query, data=body)).status == 200
    await wait_for(lambda: _failed(c) >= 1)
    page = await (await c.client.get("/console/channels")).text()
    row = re.search(r"<tr>\s*<td>wecom</td>(.*?)</tr>", page, re.S).group(1)
    assert "还没有" not in row
    assert "81013" in row

    # The configuration: names and plain values shown, secrets only as set / not set.
    assert "WECOM_CORP_ID" in page
    assert wecom_app.corp_id in page
    for secret in (wecom_app.secret, wecom_app.token, wecom_app.aes_key, "x" * 30):
        assert secret not in page
    assert re.search(r"<code>WECOM_SECRET</code></th><td><span class=\"hint\">已设置", page)
    assert re.search(r"<code>BOT_ADMIN_TOKEN</code></th><td><span class=\"hint\">已设置", page)


async def test_only_admins_see_the_channels(console) -> None:
    c = await console()
    c.add("li", "editor")
    await c.sign_in("li")
    assert (await c.client.get("/console/channels")).status == 403
