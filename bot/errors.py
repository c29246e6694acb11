"""The project's exception tree.

```
BotError
├── ConfigError                          startup only
├── WebhookError                         answered at the edge, never retried
│   ├── SignatureError (401)  ├── StaleRequestError (401)
│   ├── DecryptError (400)    └── PayloadError (400)
│                                 └── MediaTooLargeError
├── TransientError                       Celery retries: 5xx, timeouts, 429, expired token
│   ├── PlatformUnavailableError  └── LLMUnavailableError
└── PermanentError                       no retry: bad credentials, rejected request
    ├── PlatformRejectedError     └── LLMRejectedError
```

Every class pickles (Celery moves them between processes): each keeps its init arguments
in ``args`` by passing them all to ``super().__init__``.
"""

from __future__ import annotations


class BotError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(BotError):
    """The configuration is incomplete or invalid; raised at startup."""


class WebhookError(BotError):
    """A webhook request that must be refused; ``status`` is the HTTP answer."""

    status = 400

    def __init__(self, reason: str, platform: str = "") -> None:
        super().__init__(reason, platform)
        self.reason = reason
        self.platform = platform

    def __str__(self) -> str:
        return f"{self.platform}: {self.reason}" if self.platform else self.reason


class SignatureError(WebhookError):
    """The request signature does not match."""

    status = 401


class StaleRequestError(WebhookError):
    """The request timestamp is outside the accepted window."""

    status = 401


class DecryptError(WebhookError):
    """The encrypted payload cannot be decrypted or fails its integrity checks."""

    status = 400


class PayloadError(WebhookError):
    """The payload is malformed, hostile or of an unsupported shape."""

    status = 400


class MediaTooLargeError(PayloadError):
    """A file a user sent is over the configured size limit; nothing is kept."""


class _RemoteError(BotError):
    """An error reported by (or while reaching) a remote service."""

    # errcode: the platform's code, a number (WeCom, Feishu…) or a name (DingTalk's
    # "Forbidden.AccessDenied.IpNotInWhiteList"); adapters/errcodes.py explains the known ones.
    def __init__(
        self,
        reason: str,
        platform: str = "",
        errcode: int | str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(reason, platform, errcode, status)
        self.reason = reason
        self.platform = platform
        self.errcode = errcode
        self.status = status

    def __str__(self) -> str:
        parts = [p for p in (self.platform, self.reason) if p]
        if self.errcode is not None:
            parts.append(f"errcode={self.errcode}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        return " ".join(parts)


class TransientError(_RemoteError):
    """Worth retrying later: 5xx, timeouts, 429, an expired token."""


class PlatformUnavailableError(TransientError):
    """A chat platform's API is unreachable or temporarily failing."""


class LLMUnavailableError(TransientError):
    """A model backend is unreachable, too slow, overloaded or failing."""


class PermanentError(_RemoteError):
    """Not worth retrying: bad credentials, a rejected request."""


class PlatformRejectedError(PermanentError):
    """A chat platform's API refused the request for good."""


class LLMRejectedError(PermanentError):
    """A model backend refused the request for good (4xx other than 429)."""
