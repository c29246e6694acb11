import pickle

import pytest

from bot import errors

REMOTE = [
    errors.TransientError,
    errors.PlatformUnavailableError,
    errors.LLMUnavailableError,
    errors.PermanentError,
    errors.PlatformRejectedError,
    errors.LLMRejectedError,
]
EDGE = [
    errors.WebhookError,
    errors.SignatureError,
    errors.StaleRequestError,
    errors.DecryptError,
    errors.PayloadError,
]


@pytest.mark.parametrize("cls", REMOTE)
def test_remote_errors_pickle_with_their_fields(cls: type[errors._RemoteError]) -> None:
    exc = cls("boom", platform="wecom", errcode=42001, status=502)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls
    assert (back.reason, back.platform, back.errcode, back.status) == ("boom", "wecom", 42001, 502)
    assert str(back) == str(exc)


@pytest.mark.parametrize("cls", EDGE)
def test_webhook_errors_pickle_and_keep_status(cls: type[errors.WebhookError]) -> None:
    back = pickle.loads(pickle.dumps(cls("bad signature", "wecom")))
    assert type(back) is cls
    assert back.reason == "bad signature"
    assert back.status == cls.status


def test_statuses_follow_the_tree() -> None:
    assert errors.SignatureError.status == 401
    assert errors.StaleRequestError.status == 401
    assert errors.DecryptError.status == 400
    assert errors.PayloadError.status == 400
    assert issubclass(errors.LLMUnavailableError, errors.TransientError)
    assert issubclass(errors.PlatformRejectedError, errors.PermanentError)


def test_config_error_pickles() -> None:
    back = pickle.loads(pickle.dumps(errors.ConfigError("WECOM_TOKEN missing")))
    assert str(back) == "WECOM_TOKEN missing"
