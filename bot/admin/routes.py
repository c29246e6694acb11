"""The admin API's routes, every one behind the bearer token BOT_ADMIN_TOKEN.

    /api/kb/...                      knowledge bases, documents, jobs, search (knowledge.py)
    /api/autoreply/rules             auto-reply rules (autoreply.py)
    /api/bindings                    customer bindings (bindings.py)
    /api/handoffs, /api/conversations/{id}/...   human handoff (handoff.py)
    /api/usage                       token accounting (usage.py)

Two routes are open by design and check their own credentials: the transcript page (a
signed link from the agents' group notice, or the token) and `/api/chat/messages` (a web
chat user's signed identity).
"""

from __future__ import annotations

from aiohttp import web

from bot.admin import autoreply, bindings, handoff, knowledge, usage
from bot.admin.auth import guard, middleware
from bot.web.state import BODY_LIMIT, SETTINGS


def add_routes(app: web.Application) -> None:
    """Mount the admin API on the root application `app`."""
    kb = web.Application(middlewares=[middleware])
    kb[BODY_LIMIT] = app[SETTINGS].core.upload_max_bytes
    # jobs/ first: "/jobs/{id}" would otherwise read as knowledge base "jobs".
    kb.router.add_get("/jobs/{job_id}", knowledge.job)
    kb.router.add_get("/{kb}/documents", knowledge.documents)
    kb.router.add_post("/{kb}/documents", knowledge.upload)
    kb.router.add_delete("/{kb}/documents/{source_or_id:.+}", knowledge.delete)
    kb.router.add_get("/{kb}/search", knowledge.search)
    kb.router.add_post("/{kb}/reindex", knowledge.reindex)
    app.add_subapp("/api/kb", kb)

    rules = web.Application(middlewares=[middleware])
    rules.router.add_get("/rules", autoreply.list_rules)
    rules.router.add_post("/rules", autoreply.create)
    rules.router.add_delete("/rules/{rule_id}", autoreply.delete)
    app.add_subapp("/api/autoreply", rules)

    routes = app.router
    routes.add_get("/api/bindings", guard(bindings.list_bindings))
    routes.add_post("/api/bindings", guard(bindings.create))
    routes.add_post("/api/bindings/import", guard(bindings.import_csv))
    routes.add_delete("/api/bindings/{platform}/{app}/{user_id:.+}", guard(bindings.delete))

    routes.add_get("/api/handoffs", guard(handoff.handoffs))
    routes.add_get("/api/conversations/{id:\\d+}", guard(handoff.conversation))
    routes.add_get("/api/conversations/{id:\\d+}/transcript", handoff.transcript)
    routes.add_post("/api/conversations/{id:\\d+}/reply", guard(handoff.reply))
    routes.add_post("/api/conversations/{id:\\d+}/release", guard(handoff.release))
    routes.add_post("/api/conversations/{id:\\d+}/handoff", guard(handoff.take_over))
    routes.add_get("/api/chat/messages", handoff.chat_messages)

    routes.add_get("/api/usage", guard(usage.usage_report))
