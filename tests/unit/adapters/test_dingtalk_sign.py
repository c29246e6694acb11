"""dingtalk_sign: the robot HTTP-mode header signature and its one-hour window."""

from __future__ import annotations

import pytest

from adapters.dingtalk import sign as dingtalk_sign
from bot.errors import SignatureError, StaleRequestError
from tests.vectors import robot_sign_cases

# KA: the "dingtalk-robot-sign" vector of tests/vectors/dingtalk.json (derived, cross-checked
# with nonebot/adapter-ding; formula from https://open.dingtalk.com/document/isvapp/receive-message).
(KA,) = robot_sign_cases()
TS = KA.timestamp
SECRET = KA.app_secret
SIGN = KA.sign
NOW = int(TS) / 1000


def test_sign_matches_known_answer() -> None:
    assert dingtalk_sign.sign(TS, SECRET) == SIGN


def test_verify_accepts_the_known_answer() -> None:
    dingtalk_sign.verify(SIGN, TS, app_secret=SECRET, now=NOW)


@pytest.mark.parametrize("skew_s", [-3599, 3599])
def test_verify_accepts_within_the_hour(skew_s: int) -> None:
    dingtalk_sign.verify(SIGN, TS, app_secret=SECRET, now=NOW + skew_s)


@pytest.mark.parametrize("skew_s", [-3601, 3601])
def test_verify_rejects_outside_the_hour(skew_s: int) -> None:
    with pytest.raises(StaleRequestError):
        dingtalk_sign.verify(SIGN, TS, app_secret=SECRET, now=NOW + skew_s)


@pytest.mark.parametrize(
    ("sign", "timestamp", "secret"),
    [
        (SIGN, str(int(TS) + 1), SECRET),
        (SIGN, TS, SECRET + "x"),
        (SIGN[:-2] + "A=", TS, SECRET),
        ("", TS, SECRET),
        ("签名", TS, SECRET),
    ],
)
def test_any_changed_input_is_rejected(sign: str, timestamp: str, secret: str) -> None:
    with pytest.raises(SignatureError):
        dingtalk_sign.verify(sign, timestamp, app_secret=secret, now=NOW)


@pytest.mark.parametrize("timestamp", ["", "12ab", "-1577262236757", "١٢٣", "9" * 40])
def test_non_numeric_timestamp_is_stale(timestamp: str) -> None:
    with pytest.raises(StaleRequestError):
        dingtalk_sign.verify(SIGN, timestamp, app_secret=SECRET, now=NOW)
