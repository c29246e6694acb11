"""`bot doctor`'s Feishu scope checks against the fake open API: a missing `im:message` or
`cardkit:card:write` is ✗ with what to enable, and asking sends nothing anyone sees."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.doctor import scopes
from bot.doctor.result import Result, Status
from bot.doctor.run import run_checks
from bot.domain import DEFAULT_APP
from bot.settings import Settings
from tests.fakes.base import serve
from tests.fakes.feishu_api import FeishuFakeState, make_feishu_app


@pytest.fixture
def feishu() -> Iterator[tuple[FeishuFakeState, str]]:
    state = FeishuFakeState()
    with serve(make_feishu_app(state)) as url:
        yield state, url


def _section(state: FeishuFakeState, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "app_id": state.app_id,
        "app_secret": state.app_secret,
        "verification_token": "doctor-token",
        "api_base": url,
        **extra,
    }


async def _check(settings: Settings) -> dict[str, Result]:
    found = await scopes.check_feishu(settings, DEFAULT_APP, settings.feishu)
    return {result.name: result for result in found}


async def test_granted_scopes_pass_and_nothing_is_sent(
    make_settings: Callable[..., Settings], feishu: tuple[FeishuFakeState, str]
) -> None:
    state, url = feishu
    found = await _check(make_settings(feishu=_section(state, url, streaming_cards=True)))
    assert found["feishu scope im:message"].status is Status.OK
    assert "code 230001" in found["feishu scope im:message"].detail
    card = found["feishu scope cardkit:card:write"]
    assert card.status is Status.OK
    assert card.detail == "granted (created a card entity, never sent)"
    assert state.sent == []  # no message reached a chat
    assert len(state.cards) == 1  # the card entity exists, never shown


async def test_missing_send_scope_says_to_enable_im_message(
    make_settings: Callable[..., Settings], feishu: tuple[FeishuFakeState, str]
) -> None:
    state, url = feishu
    state.message_scope = False
    found = await _check(make_settings(feishu=_section(state, url)))
    assert list(found) == ["feishu scope im:message"]  # no card check without streaming cards
    line = found["feishu scope im:message"].line()
    assert line.startswith("✗ feishu scope im:message: errcode 99991672")
    assert "fix: enable im:message (or im:message:send_as_bot)" in line
    assert "开通 im:message" in line


async def test_missing_cardkit_scope_with_streaming_cards_on(
    make_settings: Callable[..., Settings], feishu: tuple[FeishuFakeState, str]
) -> None:
    state, url = feishu
    state.cardkit_scope = False
    found = await _check(make_settings(feishu=_section(state, url, streaming_cards=True)))
    assert found["feishu scope im:message"].status is Status.OK
    card = found["feishu scope cardkit:card:write"]
    assert card.status is Status.FAIL
    assert "FEISHU_STREAMING_CARDS=true" in card.detail
    assert "unset FEISHU_STREAMING_CARDS" in card.fix_en
    assert state.cards == {}


async def test_wrong_secret_leaves_the_scopes_to_the_token_check(
    make_settings: Callable[..., Settings], feishu: tuple[FeishuFakeState, str]
) -> None:
    state, url = feishu
    section = _section(state, url, streaming_cards=True, app_secret="not-the-secret")
    found = await _check(make_settings(feishu=section))
    assert [r.status for r in found.values()] == [Status.SKIP, Status.SKIP]
    assert "see the token check" in found["feishu scope im:message"].detail


async def test_the_doctor_runs_the_scope_checks_for_a_feishu_app(
    make_settings: Callable[..., Settings], feishu: tuple[FeishuFakeState, str]
) -> None:
    state, url = feishu
    state.message_scope = False
    results = await run_checks(make_settings(feishu=_section(state, url)))
    lines = [r.line() for r in results]
    assert any(line.startswith("✓ feishu token") for line in lines), lines
    assert any(line.startswith("✗ feishu scope im:message: errcode 99991672") for line in lines)
