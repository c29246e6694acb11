"""Admin API tokens with scopes: BOT_ADMIN_TOKENS, and BOT_ADMIN_TOKEN as the all-scopes one.

BOT_ADMIN_TOKENS is a JSON list, one object per token:

    [{"name": "ci", "token": "…", "scopes": ["knowledge"]},
     {"name": "crm", "token": "…", "scopes": ["bindings", "usage"]}]

A scope names one part of the admin API (`SCOPES`); `admin` is all of them. Errors name the
entry and the field, never a token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

# The parts of the admin API a token may be limited to (bot/admin/routes.py says which
# route needs which).
KNOWLEDGE = "knowledge"
HANDOFF = "handoff"
BINDINGS = "bindings"
RULES = "rules"
USAGE = "usage"
SCOPES = (KNOWLEDGE, HANDOFF, BINDINGS, RULES, USAGE)
ADMIN = "admin"  # every scope, today's and those added later
LEGACY_NAME = "BOT_ADMIN_TOKEN"  # the name the single token goes by in logs
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True, slots=True)
class AdminToken:
    """One bearer token of the admin API and what it may reach."""

    name: str
    secret: str = field(repr=False)
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return ADMIN in self.scopes or scope in self.scopes


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[\w.-]+$")
    token: str = Field(min_length=MIN_TOKEN_CHARS, max_length=512)
    scopes: list[str] = Field(min_length=1)


_ENTRIES = TypeAdapter(list[_Entry])


def parse(raw: str) -> tuple[AdminToken, ...]:
    """The tokens of BOT_ADMIN_TOKENS; ValueError saying what is wrong (no token in it)."""
    if not raw.strip():
        return ()
    try:
        entries = _ENTRIES.validate_json(raw)
    except ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        )
        raise ValueError(
            f"BOT_ADMIN_TOKENS must be a JSON list of name/token/scopes ({where})"
        ) from None
    tokens: list[AdminToken] = []
    for i, entry in enumerate(entries):
        unknown = sorted(set(entry.scopes) - {*SCOPES, ADMIN})
        if unknown:
            raise ValueError(
                f"BOT_ADMIN_TOKENS[{i}] ({entry.name}): unknown scopes {', '.join(unknown)} "
                f"(known: {', '.join((*SCOPES, ADMIN))})"
            )
        tokens.append(AdminToken(entry.name, entry.token, frozenset(entry.scopes)))
    check_unique(tokens)
    return tuple(tokens)


def check_unique(tokens: list[AdminToken]) -> None:
    """ValueError when two tokens share a name or a value (which one would it be?)."""
    names = [t.name for t in tokens]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"BOT_ADMIN_TOKENS: the name {twice[0]} is used twice")
    secrets = [t.secret for t in tokens]
    for token in tokens:
        if secrets.count(token.secret) > 1:
            raise ValueError(f"BOT_ADMIN_TOKENS: {token.name} has the same token as another")


def all_tokens(single: str, raw: str) -> tuple[AdminToken, ...]:
    """BOT_ADMIN_TOKEN (all scopes, when set) followed by the scoped BOT_ADMIN_TOKENS."""
    tokens = list(parse(raw))
    if single:
        tokens.insert(0, AdminToken(LEGACY_NAME, single, frozenset({ADMIN})))
    check_unique(tokens)
    return tuple(tokens)
