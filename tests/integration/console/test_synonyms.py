"""The console's synonyms page over HTTP: an editor adds 扫地机 = 扫地机器人 (CSRF-checked, in
the audit log), a bad pair is refused with the reason in the page's language, the pair is
removed again; a desk agent cannot reach the page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlmodel import Session

from bot.console import audit, i18n
from knowledge import synonym_table
from tests.integration.console.conftest import csrf_of

PAGE = "/console/knowledge/synonyms"


@pytest.fixture(autouse=True)
def _forget_the_list() -> Iterator[None]:
    # The list a process read is process-wide: leave none behind for other tests.
    synonym_table.reset()
    yield
    synonym_table.reset()


def _stored(c) -> dict[str, str]:
    with Session(c.engine) as s:
        return synonym_table.load(s)


async def test_an_editor_adds_and_removes_a_nickname(console) -> None:
    c = await console()
    c.add("li", "editor")
    await c.sign_in("li")
    page = await c.client.get(PAGE)
    assert page.status == 200
    html = await page.text()
    assert "还没有自定义同义词" in html
    token = csrf_of(html)

    pair = {"variant": "扫地机", "standard": "扫地机器人"}
    forged = await c.client.post(PAGE, data=pair, allow_redirects=False)
    assert forged.status == 403
    assert _stored(c) == {}

    made = await c.client.post(PAGE, data={**pair, "csrf_token": token}, allow_redirects=False)
    assert made.status in (302, 303), await made.text()
    assert _stored(c) == {"扫地机": "扫地机器人"}
    html = await (await c.client.get(f"{PAGE}?added=1")).text()
    assert "已添加" in html
    assert "<td>扫地机</td>" in html

    cycle = {"variant": "扫地机器人", "standard": "扫地机", "csrf_token": token}
    refused = await c.client.post(PAGE, data=cycle)
    assert refused.status == 400
    assert "“扫地机”本身是“扫地机器人”的说法" in await refused.text()
    c.client.session.cookie_jar.update_cookies({i18n.COOKIE: "en"})
    refused = await c.client.post(PAGE, data={**cycle, "variant": "扫地机", "standard": "扫地机"})
    assert refused.status == 400
    assert "are the same word" in await refused.text()

    gone = await c.client.post(
        f"{PAGE}/delete", data={"variant": "扫地机", "csrf_token": token}, allow_redirects=False
    )
    assert gone.status in (302, 303)
    assert _stored(c) == {}
    actions = [(e.action, e.target) for e in reversed(audit.recent(c.engine, actor="li"))]
    assert ("synonym.add", "synonyms") in actions
    assert ("synonym.delete", "synonyms") in actions


async def test_a_desk_agent_cannot_edit_synonyms(console) -> None:
    c = await console()
    c.add("wang", "agent")
    await c.sign_in("wang")
    assert (await c.client.get(PAGE, allow_redirects=False)).status in (302, 303, 403)
    token = await c.csrf()
    made = await c.client.post(
        PAGE,
        data={"variant": "扫地机", "standard": "扫地机器人", "csrf_token": token},
        allow_redirects=False,
    )
    assert made.status in (302, 303, 403)
    assert _stored(c) == {}
