"""BOT_ADMIN_TOKENS: several admin API tokens with scopes; what a bad list is told, never
with a token in the message."""

from __future__ import annotations

import json

import pytest

from bot.errors import ConfigError
from bot.settings import Settings
from bot.settings.tokens import ADMIN, LEGACY_NAME

SECRET = "ci-" + "s" * 29


def _load(single: str = "", tokens: object = None) -> Settings:
    raw = tokens if isinstance(tokens, str) else json.dumps(tokens or [])
    return Settings.load(None, core={"admin_token": single, "admin_tokens": raw})


def test_the_single_token_is_every_scope_and_comes_first() -> None:
    s = _load("legacy-" + "x" * 20, [{"name": "ci", "token": SECRET, "scopes": ["knowledge"]}])
    legacy, ci = s.core.admin_credentials()
    assert (legacy.name, legacy.scopes) == (LEGACY_NAME, frozenset({ADMIN}))
    assert legacy.allows("usage")
    assert legacy.allows("a-scope-added-later")
    assert ci.allows("knowledge")
    assert not ci.allows("handoff")
    assert SECRET not in repr(ci)


def test_no_token_at_all_is_an_empty_list() -> None:
    assert _load().core.admin_credentials() == ()


@pytest.mark.parametrize(
    ("tokens", "says"),
    [
        ("not json", "JSON list"),
        ([{"name": "ci", "token": SECRET, "scopes": ["orders-of-everyone"]}], "unknown scopes"),
        ([{"name": "ci", "token": SECRET, "scopes": []}], "scopes"),
        ([{"name": "ci", "token": SECRET[:10], "scopes": ["usage"]}], "at least 16"),
        ([{"name": "ci", "token": SECRET, "scopes": ["usage"], "role": "x"}], "role"),
        (
            [
                {"name": "ci", "token": SECRET, "scopes": ["usage"]},
                {"name": "ci", "token": SECRET + "2", "scopes": ["usage"]},
            ],
            "used twice",
        ),
        (
            [
                {"name": "a", "token": SECRET, "scopes": ["usage"]},
                {"name": "b", "token": SECRET, "scopes": ["rules"]},
            ],
            "same token",
        ),
    ],
)
def test_a_bad_list_stops_startup_without_showing_a_token(tokens: object, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load("", tokens)
    assert says in str(caught.value)
    assert SECRET[:10] not in str(caught.value)


def test_the_single_token_may_not_repeat_a_scoped_one() -> None:
    with pytest.raises(ConfigError, match="same token"):
        _load(SECRET, [{"name": "ci", "token": SECRET, "scopes": ["usage"]}])
