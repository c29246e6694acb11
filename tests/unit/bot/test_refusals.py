"""bot/pipeline/refusals.py: platform errors counted by errcode, the known ones explained."""

from __future__ import annotations

from prometheus_client import REGISTRY

from bot.domain import Platform
from bot.errors import LLMRejectedError, PlatformRejectedError, PlatformUnavailableError
from bot.pipeline import refusals


def _count(platform: str, errcode: str) -> float:
    labels = {"platform": platform, "errcode": errcode}
    return REGISTRY.get_sample_value("bot_platform_errors_total", labels) or 0.0


def test_a_known_code_is_counted_by_name_and_explained() -> None:
    before = _count("wecom_kf", "60020")
    exc = PlatformRejectedError("kf/send_msg refused", Platform.WECOM_KF, 60020)
    hint = refusals.observe(exc)
    assert _count("wecom_kf", "60020") == before + 1
    assert hint.startswith("; 60020: this server's IP is not among the app's trusted IPs")


def test_a_dingtalk_code_name_is_its_label() -> None:
    code = "Forbidden.AccessDenied.IpNotInWhiteList"
    before = _count("dingtalk", code)
    exc = PlatformRejectedError("robot/oToMessages/batchSend answered", "dingtalk", code, 403)
    assert "开发管理 → 服务器出口IP" in refusals.observe(exc)
    assert _count("dingtalk", code) == before + 1


def test_an_unknown_code_is_counted_as_other_without_a_guess() -> None:
    before = _count("feishu", refusals.OTHER)
    assert refusals.observe(PlatformUnavailableError("busy", Platform.FEISHU, 1234567)) == ""
    assert _count("feishu", refusals.OTHER) == before + 1


def test_errors_without_a_platform_code_are_not_counted() -> None:
    before = _count("wecom", refusals.OTHER)
    assert refusals.observe(PlatformRejectedError("answered", Platform.WECOM, status=400)) == ""
    assert refusals.observe(LLMRejectedError("bad request", "vllm", 40001, 400)) == ""
    assert _count("wecom", refusals.OTHER) == before
    assert _count("vllm", "40001") == 0.0
