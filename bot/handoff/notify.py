"""Notices to the human agents' group through a group robot webhook.

Three kinds, chosen by HANDOFF_NOTIFY_KIND; HANDOFF_NOTIFY_URL is the robot's full webhook:

- ``wecom``: 企业微信群机器人, ``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY``,
  body ``{"msgtype": "markdown", "markdown": {"content": ...}}`` (content at most 4096
  bytes), answer ``{"errcode": 0, "errmsg": "ok"}``.
- ``dingtalk``: 钉钉自定义机器人, ``https://oapi.dingtalk.com/robot/send?access_token=T``;
  with 加签 (HANDOFF_NOTIFY_SECRET, the ``SEC…`` string) the query also carries
  ``timestamp`` (ms) and ``sign`` = base64(HMAC-SHA256(key=secret, msg=f"{ts}\\n{secret}")).
  Body ``{"msgtype": "markdown", "markdown": {"title", "text"}}``, answer ``errcode`` 0.
- ``feishu``: 飞书自定义机器人, ``https://open.feishu.cn/open-apis/bot/v2/hook/ID``; with
  签名校验 the body carries ``timestamp`` (s, as a string) and ``sign`` =
  base64(HMAC-SHA256(key=f"{ts}\\n{secret}", msg=b"")) — the key is the string to sign, not
  the secret (unlike DingTalk). Answer ``{"code": 0, "msg": "success"}``.

A notice that fails (timeout, HTTP error, a non-zero errcode) raises `NotifyError`; the
caller logs it and keeps the handoff: the conversation is already the humans'.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

log = logging.getLogger(__name__)

KINDS = ("wecom", "dingtalk", "feishu")
WECOM_MAX_BYTES = 4096
MAX_TEXT_CHARS = 3000  # DingTalk and Feishu accept more; a notice is a summary, not a log


class NotifyError(Exception):
    """The robot webhook refused or did not answer the notice."""


@dataclass(frozen=True, slots=True)
class Notice:
    """What the agents read: a title line and markdown-ish body lines."""

    title: str
    lines: tuple[str, ...]

    def markdown(self) -> str:
        return f"### {self.title}\n" + "\n".join(self.lines)

    def plain(self) -> str:
        return self.title + "\n" + "\n".join(line.replace("**", "") for line in self.lines)


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk robot 加签: base64(HMAC-SHA256(secret, "{timestamp}\\n{secret}"))."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu bot 签名校验: base64(HMAC-SHA256(key="{timestamp}\\n{secret}", msg=b""))."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _truncate_bytes(text: str, limit: int) -> str:
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode(errors="ignore") + "…"


def build_request(
    kind: str, url: str, secret: str, notice: Notice, *, now: float
) -> tuple[str, dict[str, Any]]:
    """The URL to post to and the JSON body, for `kind` (pure: `now` is a parameter)."""
    if kind == "wecom":
        content = _truncate_bytes(notice.markdown(), WECOM_MAX_BYTES)
        return url, {"msgtype": "markdown", "markdown": {"content": content}}
    if kind == "dingtalk":
        if secret:
            ts = int(now * 1000)
            url = _with_query(url, timestamp=str(ts), sign=dingtalk_sign(secret, ts))
        text = notice.markdown()[:MAX_TEXT_CHARS]
        return url, {"msgtype": "markdown", "markdown": {"title": notice.title, "text": text}}
    if kind == "feishu":
        body: dict[str, Any] = {
            "msg_type": "text",
            "content": {"text": notice.plain()[:MAX_TEXT_CHARS]},
        }
        if secret:
            ts = int(now)
            body = {"timestamp": str(ts), "sign": feishu_sign(secret, ts), **body}
        return url, body
    raise ValueError(f"unknown notice kind {kind!r}; use one of {', '.join(KINDS)}")


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in params]
    query.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


async def send(
    http: aiohttp.ClientSession,
    kind: str,
    url: str,
    secret: str,
    notice: Notice,
    *,
    now: float,
    timeout_s: float = 5.0,
) -> None:
    """Post `notice`; raises NotifyError when it is not delivered."""
    target, body = build_request(kind, url, secret, notice, now=now)
    try:
        async with http.post(
            target,
            data=json.dumps(body, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json; charset=utf-8"},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            text = await resp.text()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise NotifyError(f"{kind} robot unreachable: {type(exc).__name__}") from exc
    if status >= 400:
        raise NotifyError(f"{kind} robot answered HTTP {status}: {text[:200]}")
    try:
        answer = json.loads(text)
    except ValueError as exc:
        raise NotifyError(f"{kind} robot answered non-JSON: {text[:200]}") from exc
    # WeCom and DingTalk say errcode; Feishu says code (older hooks: StatusCode).
    code = answer.get("errcode", answer.get("code", answer.get("StatusCode", 0)))
    if code not in (0, None):
        message = answer.get("errmsg") or answer.get("msg") or ""
        raise NotifyError(f"{kind} robot refused the notice: {code} {message}")
