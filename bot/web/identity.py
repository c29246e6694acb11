"""Web chat identities the server issues, so a browser cannot claim another user's id.

A web user is ``web-<32 hex>`` plus ``sig`` = HMAC-SHA256(key, "webchat-user:v1:" + user)
(hex, first 32 characters). The server hands both out on the first request that names no
user (JSON fields ``user``/``sig`` and the HttpOnly cookie ``bot_web_id`` = "user.sig");
later requests carry them back (body fields, or the cookie), and anything unsigned or
badly signed is refused (401). Order bindings and human replies hang off that user id,
so knowing someone's id is no longer enough to read them.

The key, in order: BOT_SECRET_KEY; else derived from BOT_ADMIN_TOKEN (rotating the admin
token then signs everyone out of web chat); else 32 random bytes generated once and kept
in Redis (``secret:webchat_identity``, no expiry; SET NX so concurrent replicas agree).
Operator tools holding the settings (`bot chat --user`, `bot simulate web`) sign locally.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis
from aiohttp import web

from bot import keys
from bot.errors import ConfigError
from bot.settings import Settings

COOKIE = "bot_web_id"
COOKIE_MAX_AGE_S = 365 * 24 * 3600
MAX_USER_CHARS = 128
_DOMAIN = b"webchat-user:v1:"
_SIG_CHARS = 32


class IdentityError(Exception):
    """The request's web identity is missing its signature or the signature is wrong."""


@dataclass(frozen=True, slots=True)
class WebIdentity:
    user: str
    sig: str
    fresh: bool = False  # issued by this request: tell the browser (body and cookie)

    @property
    def cookie_value(self) -> str:
        return f"{self.user}.{self.sig}"


def sign(key: bytes, user: str) -> str:
    return hmac.new(key, _DOMAIN + user.encode(), hashlib.sha256).hexdigest()[:_SIG_CHARS]


def issue(key: bytes) -> WebIdentity:
    user = f"web-{uuid.uuid4().hex}"
    return WebIdentity(user, sign(key, user), fresh=True)


def resolve(key: bytes, user: str | None, sig: str | None, cookie: str | None) -> WebIdentity:
    """The caller's identity: body fields first, else the cookie, else a fresh one.

    Raises IdentityError for a named user without a valid signature (never a fresh
    identity: that would silently drop the caller's conversation and bindings). A stale
    or forged cookie alone gets a fresh identity: the chat page cannot clear it itself.
    """
    if not user and cookie:
        cookie_user, _, cookie_sig = cookie.rpartition(".")
        if cookie_user and _valid(key, cookie_user, cookie_sig):
            return WebIdentity(cookie_user, cookie_sig)
        return issue(key)
    if user and not sig and cookie:
        cookie_user, _, cookie_sig = cookie.rpartition(".")
        sig = cookie_sig if cookie_user == user else None
    if not user:
        return issue(key)
    if len(user) > MAX_USER_CHARS:
        raise IdentityError(f"user must be at most {MAX_USER_CHARS} characters")
    if not sig:
        raise IdentityError(
            "user needs its sig, as returned by the first /api/chat answer; "
            "send no user to get a new identity"
        )
    if not _valid(key, user, sig):
        raise IdentityError("the signature does not match this user: send no user to start anew")
    return WebIdentity(user, sig)


def _valid(key: bytes, user: str, sig: str) -> bool:
    return len(user) <= MAX_USER_CHARS and hmac.compare_digest(
        sig.encode(), sign(key, user).encode()
    )


def configured_key(settings: Settings) -> bytes | None:
    """The key from the settings, or None when it has to come from Redis."""
    explicit = settings.core.secret_key.get_secret_value()
    if explicit:
        return explicit.encode()
    admin = settings.core.admin_token.get_secret_value()
    if admin:
        # A derived key, not the token itself: a signature never helps guess the token.
        return hmac.new(admin.encode(), b"webchat-identity-key", hashlib.sha256).digest()
    return None


async def signing_key(settings: Settings, redis: aioredis.Redis) -> bytes:
    """The signing key; generated and stored in Redis (once, for all replicas) if needed."""
    key = configured_key(settings)
    if key is not None:
        return key
    stored = await redis.get(keys.WEBCHAT_IDENTITY_SECRET)
    if stored is None:
        await redis.set(keys.WEBCHAT_IDENTITY_SECRET, secrets.token_hex(32), nx=True)
        stored = await redis.get(keys.WEBCHAT_IDENTITY_SECRET)
    if stored is None:  # flushed between the two calls: refuse rather than sign with nothing
        raise IdentityError("the web chat signing key could not be stored in Redis")
    return stored if isinstance(stored, bytes) else str(stored).encode()


async def sign_for(settings: Settings, user: str) -> str:
    """`sig` for `user`, for operator tools that hold the server's settings."""
    key = configured_key(settings)
    if key is None:
        if not settings.core.redis_url:
            raise ConfigError(
                "signing a web chat user needs the server's key: set BOT_SECRET_KEY (or "
                "BOT_ADMIN_TOKEN) as the server has it, or REDIS_URL, or run `bot up` first"
            )
        redis = aioredis.Redis.from_url(
            settings.core.redis_url, socket_connect_timeout=2, socket_timeout=5
        )
        try:
            key = await signing_key(settings, redis)
        finally:
            await redis.aclose()
    return sign(key, user)


async def from_request(
    request: web.Request,
    settings: Settings,
    redis: aioredis.Redis,
    user: str | None,
    sig: str | None,
) -> WebIdentity | web.Response:
    """The request's identity, or the error answer (401 bad signature, 503 no key)."""
    try:
        key = await signing_key(settings, redis)
    except (aioredis.RedisError, IdentityError) as exc:
        return web.json_response(
            {"error": f"web chat identity unavailable, retry: {type(exc).__name__}"}, status=503
        )
    try:
        identity = resolve(key, user, sig, request.cookies.get(COOKIE))
    except IdentityError as exc:
        return web.json_response({"error": f"unauthorized web chat user: {exc}"}, status=401)
    if identity.fresh and not await _may_issue(request, settings, redis):
        return web.json_response(
            {"error": "too many new chat sessions from this address; try again within the hour"},
            status=429,
            headers={"Retry-After": "3600"},
        )
    return identity


async def _may_issue(request: web.Request, settings: Settings, redis: aioredis.Redis) -> bool:
    """Count one new identity for the client's address; False past the hourly limit."""
    limit = settings.core.webchat_identities_per_hour
    if limit <= 0:
        return True
    key = keys.identities_issued(client_address(request))
    try:
        count = await redis.incr(key)
        if count == 1:
            await redis.expire(key, keys.IDENTITIES_WINDOW_TTL_S)
    except aioredis.RedisError:
        return False  # the limit cannot be checked: no new identities, existing ones work
    return int(count) <= limit


def client_address(request: web.Request) -> str:
    """The client's address: the peer, or behind a proxy on loopback or a private network
    the last address in X-Forwarded-For (the one that proxy saw; earlier ones are the
    client's own claims)."""
    peer = request.remote or ""
    forwarded = request.headers.get("X-Forwarded-For", "")
    try:
        behind_proxy = ipaddress.ip_address(peer).is_private
    except ValueError:
        behind_proxy = False
    if behind_proxy and forwarded:
        last = forwarded.rsplit(",", 1)[-1].strip()[:64]
        if last:
            return last
    return peer


def secure_cookies(request: web.Request, settings: Settings) -> bool:
    """Cookies are `Secure` on HTTPS, including behind a proxy that ends TLS for us (the
    public URL says https)."""
    return request.secure or settings.handoff.public_url.lower().startswith("https://")


def remember(response: web.StreamResponse, identity: WebIdentity, *, secure: bool) -> None:
    """Set the HttpOnly cookie for a freshly issued identity (SameSite=Lax: no CSRF posts)."""
    if identity.fresh:
        response.set_cookie(
            COOKIE,
            identity.cookie_value,
            max_age=COOKIE_MAX_AGE_S,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=secure,
        )


def conversation_of(user: str, conversation: str | None) -> str:
    """The conversation id of a web chat: the user's own, or a named one under it."""
    return f"{user}/{conversation}" if conversation else user
