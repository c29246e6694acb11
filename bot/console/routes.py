"""The console's routes, mounted under /console/ on the web process.

    GET  /console/                          the start page of the operator's role
    GET  /console/login  POST /console/login  POST /console/logout
    GET  /console/inbox                      conversations waiting for a person (admin, agent)
    GET  /console/inbox/rows                 the same, as a fragment the page refreshes
    GET  /console/conversations              conversations, filtered (every role)
    GET  /console/conversations.csv          the same selection's messages as CSV
    GET  /console/conversations/{id}         messages, handoff history, reply form
    GET  /console/conversations/{id}/messages   the message list fragment
    GET  /console/conversations/{id}/events     server-sent events: `changed` on a new message
    POST /console/conversations/{id}/take-over|claim|reply|release|notes|transfer
    GET  /console/presence  POST /console/presence   heartbeat; online/away (admin, agent)
    GET  /console/canned  POST /console/canned  POST /console/canned/{id}/delete  (admin)
    GET  /console/accounts  POST /console/accounts   accounts (admin)
    POST /console/accounts/{username}/disable|enable|password
    GET  /console/audit                      the audit log (admin)
    GET  /console/dashboard[?days=N]         volumes, answer kinds, times, models (admin)
    GET  /console/channels                   webhook URLs, last activity, the configuration (admin)
    POST /console/channels/check-token       ask one platform app's token endpoint (admin)
    GET  /console/setup-check  POST /console/setup-check   `bot doctor`, on demand (admin)
    GET  /console/rules[?text=&platform=&app=]   auto-reply rules, "try it" (admin, editor)
    POST /console/rules                      add a rule
    GET|POST /console/rules/{id}             one rule: the form, save it
    POST /console/rules/{id}/enable|disable|delete
    GET  /console/bindings[?q=&platform_filter=&page=]  customer bindings (admin; agent reads)
    POST /console/bindings  POST /console/bindings/unbind   bind, unbind (admin)
    GET  /console/knowledge                  the knowledge bases (admin, editor)
    GET  /console/knowledge/{kb}[?q=...]     documents, upload, hit testing
    GET  /console/knowledge/{kb}/documents   the documents table, as a fragment
    POST /console/knowledge/{kb}/upload      files → one ingestion job (JSON for the script)
    GET  /console/knowledge/jobs/{job_id}    a job's progress (JSON)
    GET  /console/knowledge/unanswered       questions the bot could not answer, grouped
    GET|POST /console/knowledge/synonyms     your own synonyms: list, add
    POST /console/knowledge/synonyms/delete  remove one
    GET  /console/knowledge/{kb}/faq[?doc=]  an FAQ sheet's entries (default: console-faq.csv)
    GET|POST /console/knowledge/{kb}/faq/{doc}/{n|new}  one entry: edit, delete, add
    GET  /console/knowledge/{kb}/documents/{id}/faq.csv  an FAQ sheet as CSV
    GET  /console/knowledge/{kb}/documents/{id}         a document's chunks
    POST /console/knowledge/{kb}/documents/{id}/delete  remove a document
    GET  /console/static/{name}              the stylesheet and the script

Every page but the sign-in page needs a session; see bot/console/guard.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from bot.console import guard
from bot.console.accounts import ADMIN, AGENT, EDITOR
from bot.console.pages import (
    admin,
    auth,
    bindings,
    channels,
    conversations,
    dashboard,
    desk_tools,
    faq,
    inbox,
    knowledge,
    live_view,
    presence,
    rules,
    setup_check,
    synonyms,
)
from bot.console.render import redirect
from bot.web.state import BODY_LIMIT, SETTINGS

STATIC = Path(__file__).with_name("static")
# name → (file under static/, content type); vendored assets: static/vendor/README.md.
_STATIC_FILES = {
    "console.css": ("console.css", "text/css"),
    "console.js": ("console.js", "text/javascript"),
    "echarts.min.js": ("vendor/echarts.simple.min.js", "text/javascript"),
}
_USERNAME = r"{username:[A-Za-z0-9][A-Za-z0-9_.@-]{1,63}}"


def add_routes(app: web.Application) -> None:
    """Mount the console on the root application `app`."""
    console = web.Application(middlewares=[guard.middleware])
    r = console.router
    # Ids have at most 9 digits: a larger one is no row of ours (and past PostgreSQL's
    # INTEGER it would be a database error, not a 404).
    r.add_get("/", start)
    r.add_get("/login", auth.login_page)
    r.add_post("/login", auth.login)
    r.add_post("/logout", auth.logout)
    r.add_get("/inbox", inbox.inbox)
    r.add_get("/inbox/rows", inbox.inbox_rows)
    r.add_get("/conversations", conversations.conversations)
    r.add_get("/conversations.csv", conversations.export)
    r.add_get("/conversations/{id:\\d{1,9}}", inbox.conversation)
    r.add_get("/conversations/{id:\\d{1,9}}/messages", inbox.messages)
    r.add_get("/conversations/{id:\\d{1,9}}/events", live_view.events)
    r.add_post("/conversations/{id:\\d{1,9}}/take-over", inbox.take_over)
    r.add_post("/conversations/{id:\\d{1,9}}/claim", inbox.claim)
    r.add_post("/conversations/{id:\\d{1,9}}/reply", inbox.reply)
    r.add_post("/conversations/{id:\\d{1,9}}/release", inbox.release)
    r.add_post("/conversations/{id:\\d{1,9}}/notes", desk_tools.add_note)
    r.add_post("/conversations/{id:\\d{1,9}}/transfer", inbox.transfer)
    r.add_get("/presence", presence.heartbeat)
    r.add_post("/presence", presence.set_presence)
    r.add_get("/canned", desk_tools.canned_page)
    r.add_post("/canned", desk_tools.add_canned)
    r.add_post("/canned/{id:\\d{1,9}}/delete", desk_tools.remove_canned)
    r.add_get("/accounts", admin.accounts_page)
    r.add_post("/accounts", admin.add_account)
    r.add_post(f"/accounts/{_USERNAME}/disable", admin.disable_account)
    r.add_post(f"/accounts/{_USERNAME}/enable", admin.enable_account)
    r.add_post(f"/accounts/{_USERNAME}/password", admin.reset_password)
    r.add_get("/audit", admin.audit_page)
    kb_path = "/knowledge/{kb:[\\w.-]{1,64}}"
    r.add_get("/knowledge", knowledge.bases)
    r.add_get("/knowledge/open", knowledge.open_base)
    r.add_get("/knowledge/jobs/{job_id}", knowledge.job)
    r.add_get("/knowledge/unanswered", faq.unanswered)
    r.add_get("/knowledge/synonyms", synonyms.synonyms_page)
    r.add_post("/knowledge/synonyms", synonyms.add)
    r.add_post("/knowledge/synonyms/delete", synonyms.remove)
    r.add_get(kb_path, knowledge.base)
    r.add_get(f"{kb_path}/documents", knowledge.documents)
    r.add_post(f"{kb_path}/upload", knowledge.upload)
    r.add_get(f"{kb_path}/documents/{{doc:\\d{{1,9}}}}", knowledge.chunks)
    r.add_post(f"{kb_path}/documents/{{doc:\\d{{1,9}}}}/delete", knowledge.delete)
    r.add_get(f"{kb_path}/documents/{{doc:\\d{{1,9}}}}/faq.csv", faq.export)
    r.add_get(f"{kb_path}/faq", faq.sheet_page)
    entry = f"{kb_path}/faq/{{doc:\\d{{1,9}}}}/{{n:(\\d{{1,6}}|new)}}"
    r.add_get(entry, faq.entry_page)
    r.add_post(entry, faq.save)
    r.add_get("/dashboard", dashboard.dashboard)
    r.add_get("/channels", channels.channels)
    r.add_post("/channels/check-token", channels.check_token)
    r.add_get("/setup-check", setup_check.setup_check_page)
    r.add_post("/setup-check", setup_check.run_setup_check)
    r.add_get("/rules", rules.rules_page)
    r.add_post("/rules", rules.add_rule)
    r.add_get("/rules/{id:\\d{1,9}}", rules.edit_page)
    r.add_post("/rules/{id:\\d{1,9}}", rules.save_rule)
    r.add_post("/rules/{id:\\d{1,9}}/{action:enable|disable}", rules.switch_rule)
    r.add_post("/rules/{id:\\d{1,9}}/delete", rules.delete_rule)
    r.add_get("/bindings", bindings.bindings_page)
    r.add_post("/bindings", bindings.add_binding)
    r.add_post("/bindings/unbind", bindings.unbind)
    r.add_get("/static/{name}", static)
    # Uploads stream to disk with their own cap; the early Content-Length check allows it.
    console[BODY_LIMIT] = app[SETTINGS].core.upload_max_bytes
    app.add_subapp("/console", console)
    app.router.add_get("/console", _to_start)


async def _to_start(_request: web.Request) -> web.Response:
    return redirect("/console/")


@guard.page(ADMIN, AGENT, EDITOR)
async def start(request: web.Request) -> web.StreamResponse:
    role = guard.operator(request).role
    return redirect("/console/inbox" if role in (ADMIN, AGENT) else "/console/knowledge")


@guard.public
async def static(request: web.Request) -> web.StreamResponse:
    found = _STATIC_FILES.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    path, kind = found
    return web.Response(
        body=await asyncio.to_thread((STATIC / path).read_bytes),
        content_type=kind,
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=300"},
    )
