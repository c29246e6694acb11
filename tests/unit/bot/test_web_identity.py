"""Web chat identities: signing, checking, and where the key comes from."""

from __future__ import annotations

import pytest

from bot.settings import Settings
from bot.web import identity as wi

KEY = b"k" * 32


def test_issued_identity_verifies_and_is_fresh() -> None:
    issued = wi.issue(KEY)
    assert issued.user.startswith("web-")
    assert len(issued.user) == 36
    assert issued.fresh
    again = wi.resolve(KEY, issued.user, issued.sig, None)
    assert (again.user, again.fresh) == (issued.user, False)


def test_no_user_and_no_cookie_gets_a_new_identity() -> None:
    first, second = wi.resolve(KEY, None, None, None), wi.resolve(KEY, None, None, None)
    assert first.fresh
    assert second.fresh
    assert first.user != second.user


@pytest.mark.parametrize(
    ("sig", "why"),
    [(None, "needs its sig"), ("0" * 32, "does not match"), ("", "needs its sig")],
)
def test_a_named_user_without_a_valid_signature_is_refused(sig: str | None, why: str) -> None:
    with pytest.raises(wi.IdentityError, match=why):
        wi.resolve(KEY, "web-victim", sig, None)


def test_a_signature_for_another_user_or_key_does_not_transfer() -> None:
    mine = wi.issue(KEY)
    with pytest.raises(wi.IdentityError):
        wi.resolve(KEY, "web-victim", mine.sig, None)
    with pytest.raises(wi.IdentityError):
        wi.resolve(b"other-key", mine.user, mine.sig, None)


def test_the_cookie_identifies_and_a_bad_cookie_gets_a_new_identity() -> None:
    mine = wi.issue(KEY)
    assert wi.resolve(KEY, None, None, mine.cookie_value).user == mine.user
    assert wi.resolve(KEY, mine.user, None, mine.cookie_value).user == mine.user
    forged = wi.resolve(KEY, None, None, "web-victim." + "0" * 32)
    assert forged.fresh
    assert forged.user != "web-victim"
    # The cookie of one user never signs for another named in the body.
    with pytest.raises(wi.IdentityError):
        wi.resolve(KEY, "web-victim", None, mine.cookie_value)


def test_overlong_users_are_refused() -> None:
    user = "u" * 200
    with pytest.raises(wi.IdentityError, match="at most"):
        wi.resolve(KEY, user, wi.sign(KEY, user), None)


def test_the_key_comes_from_the_secret_then_the_admin_token() -> None:
    explicit = Settings.load(None, core={"secret_key": "s3cret", "admin_token": "adm"})
    derived = Settings.load(None, core={"admin_token": "adm"})
    other_admin = Settings.load(None, core={"admin_token": "adm2"})
    assert wi.configured_key(explicit) == b"s3cret"
    key = wi.configured_key(derived)
    assert key is not None
    assert b"adm" not in key
    assert len(key) == 32
    assert wi.configured_key(other_admin) != key
    assert wi.configured_key(Settings.load(None, core={})) is None
