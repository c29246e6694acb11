"""The auto-reply rules editor (admins and editors): the rules file's rules, read-only, and the
database's rules, to add, change, switch on or off and delete; and a "try it" box that says
which rule would answer a customer's message, and with what.

Rules are validated and stored by bot/pipeline/rule_store.py, the admin API's own path, and
every change bumps the version the workers compare, so they use it from their next
message. A rule that does not validate is shown again as typed, with the reason next to
the field. Every change is in the audit log with the rule before and after.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlmodel import Session

from bot.admin.common import engine_of, redis_of, settings_of
from bot.console import i18n
from bot.console.accounts import ADMIN, EDITOR
from bot.console.guard import form, lang, page, refusal
from bot.console.pages.common import audit_action
from bot.console.render import redirect, render
from bot.domain import DEFAULT_APP, InboundMessage, Platform
from bot.pipeline import autoreply, rule_store
from bot.settings import Settings
from bot.settings import apps as appconfig

EDITORS = (ADMIN, EDITOR)
PLATFORMS = tuple(p.value for p in Platform)
MAX_TRY = 2000  # characters of a tried message (the rules look at the first 1000)
_NEW = {
    "match": "contains",
    "pattern": "",
    "reply": "",
    "platform": "*",
    "app": "*",
    "priority": "100",
}
_DONE = ("added", "saved", "enabled", "disabled", "deleted")


@dataclass(frozen=True, slots=True)
class Tried:
    """The "try it" box: the message, where it came from, and the rule that answers it."""

    text: str
    platform: str
    app: str
    rule: autoreply.Rule | None = None

    @property
    def rule_id(self) -> str:
        """The database id of the answering rule ("" for a file rule or none)."""
        key = self.rule.key if self.rule else ""
        return key.removeprefix("db:") if key.startswith("db:") else ""


@page(*EDITORS)
async def rules_page(request: web.Request) -> web.StreamResponse:
    t = i18n.translator(lang(request))
    done = request.query.get("done", "")
    notice = t(f"rules.{done}") if done in _DONE else ""
    return await _page(request, notice=notice)


@page(*EDITORS)
async def add_rule(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    try:
        rule = rule_store.parse_form(data)
    except autoreply.RuleError as exc:
        return await _page(request, draft=_draft(data), problem=exc, status=400)
    row = await asyncio.to_thread(rule_store.add, engine_of(request), rule)
    await rule_store.bump(redis_of(request))
    await audit_action(request, "rule.add", f"rule:{row.id}", None, row.fields())
    return redirect("/console/rules?done=added")


@page(*EDITORS)
async def edit_page(request: web.Request) -> web.StreamResponse:
    rule_id = int(request.match_info["id"])
    row = await asyncio.to_thread(rule_store.get, engine_of(request), rule_id)
    if row is None:
        return refusal(request, 404, "notfound.title", "rules.no_rule")
    return _edit(request, row, _draft(row.fields()))


@page(*EDITORS)
async def save_rule(request: web.Request) -> web.StreamResponse:
    rule_id = int(request.match_info["id"])
    data = await form(request)
    try:
        rule = rule_store.parse_form(data)
    except autoreply.RuleError as exc:
        row = await asyncio.to_thread(rule_store.get, engine_of(request), rule_id)
        if row is None:
            return refusal(request, 404, "notfound.title", "rules.no_rule")
        return _edit(request, row, _draft(data), problem=exc, status=400)
    changed = await asyncio.to_thread(rule_store.change, engine_of(request), rule_id, rule)
    if changed is None:
        return refusal(request, 404, "notfound.title", "rules.no_rule")
    await _changed(request, "rule.edit", rule_id, *changed)
    return redirect("/console/rules?done=saved")


@page(*EDITORS)
async def switch_rule(request: web.Request) -> web.StreamResponse:
    """POST …/enable or …/disable: the rule is kept either way; only enabled rules answer."""
    rule_id = int(request.match_info["id"])
    on = request.match_info["action"] == "enable"
    changed = await asyncio.to_thread(rule_store.switch, engine_of(request), rule_id, on)
    if changed is None:
        return refusal(request, 404, "notfound.title", "rules.no_rule")
    await _changed(request, "rule.enable" if on else "rule.disable", rule_id, *changed)
    return redirect(f"/console/rules?done={'enabled' if on else 'disabled'}")


@page(*EDITORS)
async def delete_rule(request: web.Request) -> web.StreamResponse:
    rule_id = int(request.match_info["id"])
    gone = await asyncio.to_thread(rule_store.remove, engine_of(request), rule_id)
    if gone is None:
        return refusal(request, 404, "notfound.title", "rules.no_rule")
    await rule_store.bump(redis_of(request))
    await audit_action(request, "rule.delete", f"rule:{rule_id}", gone.fields(), None)
    return redirect("/console/rules?done=deleted")


async def _changed(
    request: web.Request,
    action: str,
    rule_id: int,
    before: rule_store.StoredRule,
    after: rule_store.StoredRule,
) -> None:
    await rule_store.bump(redis_of(request))
    await audit_action(request, action, f"rule:{rule_id}", before.fields(), after.fields())


async def _page(
    request: web.Request,
    *,
    draft: dict[str, str] | None = None,
    problem: autoreply.RuleError | None = None,
    notice: str = "",
    status: int = 200,
) -> web.Response:
    settings = settings_of(request)
    engine = engine_of(request)
    rows = await asyncio.to_thread(rule_store.rows, engine)
    file_rules = await asyncio.to_thread(_file_rules, settings)
    tried = await _tried(request, settings) if "text" in request.query else None
    context = {
        "rows": rows,
        "file_rules": file_rules,
        "file_path": str(settings.core.autoreply_file or ""),
        "tried": tried,
        "try_platform": tried.platform if tried else _default_platform(settings),
        "notice": notice,
        "draft": draft or _NEW,
        **_form_context(request, problem, "/console/rules"),
    }
    return render(request, "rules.html", context, status=status)


def _edit(
    request: web.Request,
    row: rule_store.StoredRule,
    draft: dict[str, str],
    *,
    problem: autoreply.RuleError | None = None,
    status: int = 200,
) -> web.Response:
    context = {
        "row": row,
        "draft": draft,
        **_form_context(request, problem, f"/console/rules/{row.id}"),
    }
    return render(request, "rule_edit.html", context, status=status)


def _form_context(
    request: web.Request, problem: autoreply.RuleError | None, action: str
) -> dict[str, Any]:
    """What the rule form needs: where it posts, the choices, and the error to show."""
    found: dict[str, Any] = {
        "form_action": action,
        "matches": autoreply.MATCH_TYPES,
        "platforms": PLATFORMS,
        "limits": {"pattern": autoreply.MAX_PATTERN_CHARS, "priority": autoreply.MAX_PRIORITY},
        "bad_field": "",
        "bad_text": "",
    }
    if problem is not None:
        t = i18n.translator(lang(request))
        text = t("rules.bad", what=t(f"rules.bad.{problem.field or 'rule'}"), reason=problem)
        found |= {"bad_field": problem.field, "bad_text": text, "error": t("rules.not_saved")}
    return found


async def _tried(request: web.Request, settings: Settings) -> Tried:
    q = request.query
    platform = q.get("platform", "")
    platform = platform if platform in PLATFORMS else _default_platform(settings)
    app = q.get("app", "").strip()[:64] or DEFAULT_APP
    text = q.get("text", "")[:MAX_TRY]
    if not text.strip():
        return Tried(text, platform, app)
    msg = InboundMessage(
        platform=Platform(platform),
        app=app,
        event_id="console-try",
        conversation_id="console-try",
        sender_id="console-try",
        text=text,
    )
    rules = await asyncio.to_thread(_rules_in_use, settings, engine_of(request))
    rule = autoreply.choose(rules, msg, agent_on=autoreply.agent_is_on(settings))
    return Tried(text, platform, app, rule)


def _rules_in_use(settings: Settings, engine: Any) -> list[autoreply.Rule]:
    """The rules a worker would use now: the file's, then the database's enabled ones, read
    afresh (a worker's cache follows the version key; this page does not wait for it)."""
    with Session(engine) as session:
        return [*_file_rules(settings), *autoreply.load_db_rules(session)]


def _file_rules(settings: Settings) -> list[autoreply.Rule]:
    current = autoreply.current_rules(settings, None)
    return [r for r in current if r.key.startswith("file:")]


def _default_platform(settings: Settings) -> str:
    configured = appconfig.configured(settings)
    return configured[0][0] if configured else Platform.WEB.value


def _draft(data: dict[str, Any]) -> dict[str, str]:
    """The form's fields as typed (or as stored), to show again."""
    return {name: str(data.get(name, "")) for name in autoreply.RULE_FIELDS}
