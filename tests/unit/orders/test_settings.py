"""ORDERS_* settings: the SQL default, a complete HTTP backend, and half configurations."""

from __future__ import annotations

from typing import Any

import pytest

from bot.errors import ConfigError
from bot.settings import Settings


def _load(**orders: Any) -> Settings:
    return Settings.load(None, orders=orders)


def test_default_is_the_sql_backend() -> None:
    s = _load()
    assert s.orders.backend == "sql"
    assert s.orders.auth_header is None


def test_a_complete_http_backend_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERS_BACKEND", "http")
    monkeypatch.setenv("ORDERS_HTTP_BASE_URL", "https://shop.example/api")
    monkeypatch.setenv("ORDERS_HTTP_AUTH_HEADER", "Authorization: Bearer abc:def")
    monkeypatch.setenv("ORDERS_HTTP_FIELD_MAP", '{"amount": "payment.total"}')
    monkeypatch.setenv("ORDERS_HTTP_TIMEOUT_S", "2.5")
    s = Settings.load(None)
    assert s.orders.auth_header == ("Authorization", "Bearer abc:def")
    assert s.orders.http_field_map == {"amount": "payment.total"}
    assert s.orders.http_timeout_s == 2.5


@pytest.mark.parametrize(
    ("orders", "message"),
    [
        ({"backend": "http"}, "missing: ORDERS_HTTP_BASE_URL"),
        ({"http_base_url": "https://x"}, "missing: ORDERS_BACKEND=http"),
        ({"backend": "http", "http_base_url": "ftp://x"}, "must start with http"),
        (
            {"backend": "http", "http_base_url": "https://x", "http_auth_header": "token"},
            "Name: value",
        ),
        (
            {"backend": "http", "http_base_url": "https://x", "http_order_path": "/o"},
            "ORDERS_HTTP_ORDER_PATH must contain {order_id}",
        ),
        (
            {"backend": "http", "http_base_url": "https://x", "http_field_map": {"amt": "x"}},
            "unknown keys: amt",
        ),
        ({"backend": "ftp"}, "ORDERS_BACKEND must be sql or http"),
        ({"id_pattern": "QH(["}, "ORDERS_ID_PATTERN"),
    ],
)
def test_half_or_badly_configured_is_a_config_error(orders: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        _load(**orders)


def test_a_secret_header_value_is_never_in_the_error() -> None:
    with pytest.raises(ConfigError) as info:
        _load(backend="http", http_auth_header="Authorization: Bearer s3cret")
    assert "s3cret" not in str(info.value)
