"""Hostile values for the HTTP fuzz (test_http_fuzz.py): odd strings, bodies of every wrong
shape, JSON of any type and payloads with a few values replaced. Everything is drawn from
the `random.Random` the caller passes, so a seed gives the same values every run."""

from __future__ import annotations

import base64
import copy
import json
import random
from typing import Any

from tests.json_paths import json_paths

# Values that broke or could break a parser: 15-digit and 5,000-digit numbers, digits that
# str.isdigit() accepts but int() refuses, non-ASCII and control characters, injections.
ODD_TEXT = (
    "",
    " ",
    "0",
    "-1",
    "999999999999999",
    "1700000000000000",
    "9" * 5000,
    "1e309",
    "NaN",
    "-Infinity",
    "0x1f",
    "1_700_000_000",
    "١٧٠٠٠٠٠٠٠٠",
    "²³",
    "𝟙𝟚𝟛",
    "签名",
    "ä",
    "\u202e",
    "\ufeff",
    "\x00",
    "\x1b[31m",
    "\r\nX-Injected: 1",
    "%ff%fe",
    "' OR 1=1 --",
    "<xml/>",
    "]]><x>",
    "${jndi:ldap://x}",
    "A" * 3000,
    "true",
    "null",
    "[]",
    "{}",
)

CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-7",
    "text/xml; charset=gbk",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "application/octet-stream",
    "*/*",
    "application/json; charset=\xff",
    "",
)

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "FOO")


def text(rng: random.Random) -> str:
    """An odd string, or a short random one of any code points (surrogates excluded)."""
    if rng.random() < 0.7:
        return rng.choice(ODD_TEXT)
    points = [rng.choice((rng.randrange(32, 127), rng.randrange(0x80, 0xD800))) for _ in range(8)]
    return "".join(map(chr, points))


def json_value(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value: a scalar of any type, or a small list or object of them."""
    roll = rng.random()
    if depth > 2 or roll < 0.6:
        return rng.choice(
            (
                None,
                True,
                False,
                0,
                -1,
                2**70,
                999999999999999,
                1e308,
                -0.0,
                0.5,
                text(rng),
            )
        )
    if roll < 0.8:
        return [json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {text(rng)[:10]: json_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def mutated(rng: random.Random, base: dict[str, Any]) -> dict[str, Any]:
    """`base` with one to three values (at any depth) replaced by anything, or removed."""
    payload = copy.deepcopy(base)
    for _ in range(rng.randrange(1, 4)):
        paths = json_paths(payload)
        if not paths:
            break
        path = rng.choice(paths)
        parent = payload
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and rng.random() < 0.25:
            del parent[path[-1]]
        else:
            parent[path[-1]] = json_value(rng)
    return payload


def deep_json(depth: int) -> bytes:
    """JSON nested past Python's recursion limit."""
    return b'{"a":' * depth + b"1" + b"}" * depth


def xml(fields: dict[str, str]) -> bytes:
    """A flat <xml> document with any values, even ones XML cannot carry (unlike build_xml)."""
    inner = "".join(f"<{tag}><![CDATA[{value}]]></{tag}>" for tag, value in fields.items())
    return f"<xml>{inner}</xml>".encode("utf-8", "surrogatepass")


def mutated_fields(rng: random.Random, base: dict[str, str], names: tuple[str, ...]) -> bytes:
    """XML of `base` with values replaced, fields removed or odd fields added."""
    fields = dict(base)
    for _ in range(rng.randrange(1, 4)):
        name = rng.choice(names)
        if name in fields and rng.random() < 0.25:
            del fields[name]
        else:
            fields[name] = text(rng)
    return xml(fields)


def body(rng: random.Random) -> bytes:
    """A body of a wrong shape: bytes, JSON of any type, deep nesting, hostile XML."""
    kind = rng.randrange(14)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 2000))
    if kind == 1:
        return json.dumps(json_value(rng)).encode()
    if kind == 2:
        return deep_json(rng.choice((200, 2000, 20000)))
    if kind == 3:
        return b"<a>" * rng.choice((200, 5000)) + b"x"
    if kind == 4:
        return b"<?xml version='1.0' encoding='UTF-7'?><xml><Encrypt>+ADw-x+AD4-</Encrypt></xml>"
    if kind == 5:
        return (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><xml><Encrypt>&b;</Encrypt></xml>'
        )
    if kind == 6:
        blob = base64.b64encode(rng.randbytes(rng.choice((0, 15, 16, 32, 48, 100)))).decode()
        return xml({"ToUserName": text(rng), "Encrypt": blob, "AgentID": text(rng)})
    if kind == 7:
        return json.dumps({"encrypt": base64.b64encode(rng.randbytes(48)).decode()}).encode()
    if kind == 8:
        return b"\xef\xbb\xbf<xml><Encrypt><![CDATA[" + rng.randbytes(20) + b"]]></Encrypt>"
    if kind == 9:
        return b"a=1&b=%ff&c=%&" + "键=值".encode()
    if kind == 10:
        return b'{"text": "' + b"\\ud800" * 3 + b'", "a": 1e999999}'
    if kind == 11:
        return rng.randbytes(rng.choice((17_000, 70_000)))  # over the 16 KB parsed in a thread
    if kind == 12:
        return b"<xml>" + b"<![CDATA[" * 3000 + b"</xml>"
    return b""


def header_value(rng: random.Random) -> bytes:
    """A header value as bytes on the wire: UTF-8, Latin-1 or invalid UTF-8, sometimes huge."""
    roll = rng.random()
    if roll < 0.1:
        return rng.choice((b"\xff\xfe", b"\xc3(", b"\xed\xa0\x80", b"a\x80b"))
    if roll < 0.15:
        return b"x" * rng.choice((4000, 8000, 9000))
    value = text(rng).replace("\r", "").replace("\n", "").replace("\x00", "")
    return value.encode("utf-8", "surrogatepass")[:8000]


def query(rng: random.Random, names: tuple[str, ...]) -> str:
    """A query string: odd values for the route's own names, or malformed outright."""
    from urllib.parse import quote

    roll = rng.random()
    if roll < 0.15:
        return rng.choice(
            (
                "%ff%fe=%00",
                "a=%",
                "&&&==&=",
                "a=1&a=2&a=3",
                "x=%e4%b8",
                "msg_signature=%ed%a0%80",
                "q=" + "b" * 9000,
                ";;;",
                "%zz=%zz",
            )
        )
    picked = rng.sample(names, rng.randrange(0, len(names) + 1)) if names else []
    if rng.random() < 0.3:
        picked.append(text(rng)[:12] or "x")
    parts = [f"{quote(n, safe='')}={quote(text(rng), safe='')}" for n in picked]
    return "&".join(parts)
