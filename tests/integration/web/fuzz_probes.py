"""The requests of the HTTP fuzz (test_http_fuzz.py): what a request is, the keys the app
under test holds, unsigned junk for any route, and the web chat's and the transcript link's
own probes (a valid identity or link with its content shaped in every wrong way). The
platforms' signed probes are in fuzz_platforms.py.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from tests.integration.web import fuzz_junk as junk


def _aes_key(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(43))


@dataclass(frozen=True)
class Keys:
    """Every credential the app under test is configured with (test_http_fuzz.fuzz_settings)."""

    corp_id: str = "wwfuzzcorp"
    agent_id: str = "1000002"
    wecom_token: str = "wecom-fuzz-token"
    wecom_aes: str = field(default_factory=lambda: _aes_key(random.Random(1)))
    kf_token: str = "kf-fuzz-token"
    kf_aes: str = field(default_factory=lambda: _aes_key(random.Random(2)))
    mp_app_id: str = "wxfuzzapp"
    mp_token: str = "mp-fuzz-token"
    mp_aes: str = field(default_factory=lambda: _aes_key(random.Random(3)))
    dt_key: str = "dingfuzzkey"
    dt_secret: str = "dingtalk-fuzz-secret"
    dt_token: str = "dt-fuzz-token"
    dt_aes: str = field(default_factory=lambda: _aes_key(random.Random(4)))
    fs_app_id: str = "cli_fuzz"
    fs_token: str = "feishu-fuzz-token"
    fs_key: str = "feishu fuzz key"
    fs_bot: str = "ou_fuzz_bot"
    aibot_token: str = "aibot-fuzz-token"
    aibot_aes: str = field(default_factory=lambda: _aes_key(random.Random(5)))
    admin_token: str = "admin-fuzz-token-0123456789abcdef"


@dataclass(frozen=True)
class Probe:
    """One request as it goes on the wire."""

    method: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, bytes], ...] = ()
    body: bytes = b""
    signed: bool = False

    def wire(self, host: str) -> bytes:
        target = f"{self.path}?{self.query}" if self.query else self.path
        head = [f"{self.method} {target} HTTP/1.1".encode("utf-8", "surrogatepass")]
        head += [f"Host: {host}".encode(), b"Connection: close"]
        head += [f"Content-Length: {len(self.body)}".encode()]
        head += [name.encode() + b": " + value for name, value in self.headers]
        return b"\r\n".join(head) + b"\r\n\r\n" + self.body


@dataclass
class Context:
    """What signed probes need besides the keys: the clock, a counter, web identities."""

    keys: Keys
    now: Callable[[], float]
    sign_user: Callable[[str], str]  # the web identity signature (bot/web/identity.sign)
    link: Callable[[int, int], str]  # the transcript link signature (handoff.state)
    conversation: int  # an existing conversation, for transcript links that open a page
    serial: int = 0

    def next(self) -> int:
        self.serial += 1
        return self.serial


def _headers(rng: random.Random, names: tuple[str, ...]) -> tuple[tuple[str, bytes], ...]:
    """Odd values for the route's own header names, an odd content type, sometimes many."""
    out = [("Content-Type", rng.choice(junk.CONTENT_TYPES).encode("utf-8", "replace"))]
    out += [(n, junk.header_value(rng)) for n in rng.sample(names, rng.randrange(len(names) + 1))]
    if rng.random() < 0.05:
        out += [(f"X-Many-{i}", b"v") for i in range(rng.choice((50, 120)))]
    if rng.random() < 0.1:
        out.append(("Cookie", b"bot_web_id=" + junk.header_value(rng)))
    return tuple(out)


def unsigned(
    rng: random.Random, path: str, method: str, queries: tuple[str, ...], headers: tuple[str, ...]
) -> Probe:
    """Junk anyone can send to `path`: any method, odd query, headers and body."""
    return Probe(
        method=method if rng.random() < 0.6 else rng.choice(junk.METHODS),
        path=path,
        query=junk.query(rng, queries),
        headers=_headers(rng, headers),
        body=junk.body(rng),
    )


# --- Web chat and the transcript link --------------------------------------------------------


def signed_chat(rng: random.Random, ctx: Context) -> Probe:
    """A valid web identity with a message of any shape (extra, missing, wrong-typed fields)."""
    user = f"web-fuzz-{rng.randrange(20)}"
    base = {"text": "你好", "user": user, "sig": ctx.sign_user(user), "conversation": "c1"}
    roll = rng.random()
    if roll < 0.8:
        body = json.dumps(junk.mutated(rng, base), ensure_ascii=False).encode()
    elif roll < 0.9:
        body = junk.deep_json(rng.choice((100, 5000)))
    else:
        body = json.dumps({**base, "text": junk.text(rng) * rng.choice((1, 2))}).encode()
    headers: list[tuple[str, bytes]] = [("Content-Type", b"application/json")]
    if rng.random() < 0.3:
        headers.append(("Accept", b"text/event-stream"))
    return Probe("POST", "/api/chat", headers=tuple(headers), body=body, signed=True)


def signed_transcript(rng: random.Random, ctx: Context) -> Probe:
    """A transcript link signed for its conversation, with its parts changed now and then."""
    conv = ctx.conversation if rng.random() < 0.7 else rng.choice((0, 999_999, 10**15))
    exp = int(ctx.now()) + 3600
    params = {"exp": str(exp), "sig": ctx.link(conv, exp)}
    path_id = str(conv)
    roll = rng.random()
    if roll < 0.2:
        params["exp"] = junk.text(rng)
    elif roll < 0.4:
        params["sig"] = junk.text(rng)
    elif roll < 0.5:
        path_id = rng.choice(("١", "0" * 30 + str(conv), "9" * 40, "9" * 5000))
    headers: tuple[tuple[str, bytes], ...] = ()
    if rng.random() < 0.2:
        headers = (("Authorization", b"Bearer " + junk.header_value(rng)),)
    return Probe(
        "GET",
        f"/api/conversations/{path_id}/transcript",
        urlencode(params),
        headers=headers,
        signed=True,
    )
