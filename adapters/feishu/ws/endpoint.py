"""The Feishu long connection's endpoint: ``POST /callback/ws/endpoint`` and handshake errors.

From lark-oapi ``lark_oapi/ws/client.py`` (``_get_conn_url``, ``_parse_ws_conn_exception``),
``const.py`` and ``model.py``: the answer is ``{code, msg, data: {URL, ClientConfig}}`` with
the ClientConfig in seconds; a refused WebSocket upgrade names its reason in
``handshake-status`` / ``handshake-msg`` / ``handshake-autherrcode`` headers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp

from adapters.http import post_read
from bot.domain import Platform
from bot.errors import PlatformRejectedError, PlatformUnavailableError

PLATFORM = Platform.FEISHU
ENDPOINT_PATH = "/callback/ws/endpoint"
# Endpoint answer codes (lark_oapi/ws/const.py): these two are worth a retry, others are not.
_BUSY_CODES = frozenset({1, 1000040343})
# Handshake refusals in the 101-less answer's headers: 403 forbidden; 514 auth failed, of which
# 1000040350 (too many connections) is the client's fault.
_FORBIDDEN, _AUTH_FAILED, _EXCEED_CONN_LIMIT = 403, 514, 1000040350


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """The server's connection settings, in seconds (the SDK's defaults)."""

    ping_interval_s: float = 120.0
    reconnect_count: int = -1
    reconnect_interval_s: float = 120.0
    reconnect_nonce_s: float = 30.0

    @classmethod
    def from_json(cls, data: Any, base: ClientConfig | None = None) -> ClientConfig:
        """Read ``{PingInterval, ReconnectCount, …}``; absent or bad values keep `base`'s."""
        base = base or cls()
        obj = data if isinstance(data, dict) else {}

        def number(key: str, default: float, minimum: float) -> float:
            value = obj.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= minimum:
                return float(value)
            return default

        return cls(
            ping_interval_s=number("PingInterval", base.ping_interval_s, 0.05),
            reconnect_count=int(number("ReconnectCount", base.reconnect_count, -1)),
            reconnect_interval_s=number("ReconnectInterval", base.reconnect_interval_s, 0),
            reconnect_nonce_s=number("ReconnectNonce", base.reconnect_nonce_s, 0),
        )


async def fetch_endpoint(
    http: aiohttp.ClientSession,
    api_base: str,
    app_id: str,
    app_secret: str,
    *,
    timeout_s: float = 10,
) -> tuple[str, ClientConfig]:
    """POST callback/ws/endpoint; return ``(wss URL, ClientConfig)``.

    PlatformRejectedError for refused credentials, PlatformUnavailableError otherwise.
    """
    url = api_base.rstrip("/") + ENDPOINT_PATH
    status, raw = await post_read(
        http,
        url,
        platform=PLATFORM,
        what=ENDPOINT_PATH,
        client_timeout=aiohttp.ClientTimeout(total=timeout_s),
        json={"AppID": app_id, "AppSecret": app_secret},
        headers={"locale": "zh"},
    )
    if status != 200:
        raise PlatformUnavailableError(f"{ENDPOINT_PATH} answered", PLATFORM, status=status)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise PlatformUnavailableError(f"{ENDPOINT_PATH} answered non-JSON", PLATFORM) from exc
    data = data if isinstance(data, dict) else {}
    code = data.get("code")
    if code != 0:
        errcode = code if isinstance(code, int) else None
        if code in _BUSY_CODES or errcode is None:
            raise PlatformUnavailableError(f"{ENDPOINT_PATH} busy", PLATFORM, errcode)
        raise PlatformRejectedError(f"{ENDPOINT_PATH} refused", PLATFORM, errcode)
    body = data.get("data")
    body = body if isinstance(body, dict) else {}
    ws_url = body.get("URL")
    if not isinstance(ws_url, str) or not ws_url.startswith(("ws://", "wss://")):
        raise PlatformUnavailableError(f"{ENDPOINT_PATH}: no WebSocket URL", PLATFORM)
    return ws_url, ClientConfig.from_json(body.get("ClientConfig"))


def query_value(url: str, name: str) -> str:
    """The first value of query parameter `name` in `url` ("" when absent)."""
    values = parse_qs(urlparse(url).query).get(name) or [""]
    return values[0]


def handshake_error(exc: aiohttp.WSServerHandshakeError) -> Exception:
    """Map a refused upgrade: forbidden or too many connections is final, the rest transient."""
    headers: Mapping[str, str] = exc.headers or {}
    try:
        status = int(headers.get("handshake-status", "0"))
        auth_code = int(headers.get("handshake-autherrcode", "0"))
    except ValueError:
        status = auth_code = 0
    reason = headers.get("handshake-msg", "") or f"HTTP {exc.status}"
    if status == _FORBIDDEN or (status == _AUTH_FAILED and auth_code == _EXCEED_CONN_LIMIT):
        return PlatformRejectedError(f"handshake refused: {reason}", PLATFORM, status or None)
    return PlatformUnavailableError(f"handshake failed: {reason}", PLATFORM, status or None)
