"""The admin API's routes, every one behind a bearer token with the route's scope
(bot/admin/auth.py; BOT_ADMIN_TOKEN has every scope):

    /api/kb/...                      knowledge bases, documents, jobs, search   knowledge
    /api/kb/synonyms                 the operator's synonyms (synonyms.py)       knowledge
    /api/autoreply/rules             auto-reply rules (autoreply.py)             rules
    /api/bindings                    customer bindings (bindings.py)             bindings
    /api/handoffs, /api/conversations/{id}/...   human handoff (handoff.py)      handoff
    /api/usage                       token accounting (usage.py)                 usage

Two routes are open by design and check their own credentials: the transcript page (a
signed link from the agents' group notice, or the token) and `/api/chat/messages` (a web
chat user's signed identity).
"""

from __future__ import annotations

from aiohttp import web

from bot.admin import autoreply, bindings, handoff, knowledge, synonyms, usage
from bot.admin.auth import guard, middleware
from bot.settings.tokens import BINDINGS, HANDOFF, KNOWLEDGE, RULES, USAGE
from bot.web.state import BODY_LIMIT, SETTINGS


def add_routes(app: web.Application) -> None:
    """Mount the admin API on the root application `app`."""
    kb = web.Application(middlewares=[middleware(KNOWLEDGE)])
    kb[BODY_LIMIT] = app[SETTINGS].core.upload_max_bytes
    # jobs/ first: "/jobs/{id}" would otherwise read as knowledge base "jobs".
    kb.router.add_get("/jobs/{job_id}", knowledge.job)
    kb.router.add_get("/synonyms", synonyms.list_synonyms)
    kb.router.add_post("/synonyms", synonyms.create)
    kb.router.add_delete("/synonyms/{variant}", synonyms.delete)
    kb.router.add_get("/{kb}/documents", knowledge.documents)
    kb.router.add_post("/{kb}/documents", knowledge.upload)
    kb.router.add_delete("/{kb}/documents/{source_or_id:.+}", knowledge.delete)
    kb.router.add_get("/{kb}/search", knowledge.search)
    kb.router.add_post("/{kb}/reindex", knowledge.reindex)
    app.add_subapp("/api/kb", kb)

    rules = web.Application(middlewares=[middleware(RULES)])
    rules.router.add_get("/rules", autoreply.list_rules)
    rules.router.add_post("/rules", autoreply.create)
    rules.router.add_put("/rules/{rule_id}", autoreply.update)
    rules.router.add_delete("/rules/{rule_id}", autoreply.delete)
    app.add_subapp("/api/autoreply", rules)

    routes = app.router
    routes.add_get("/api/bindings", guard(BINDINGS, bindings.list_bindings))
    routes.add_post("/api/bindings", guard(BINDINGS, bindings.create))
    routes.add_post("/api/bindings/import", guard(BINDINGS, bindings.import_csv))
    routes.add_delete(
        "/api/bindings/{platform}/{app}/{user_id:.+}", guard(BINDINGS, bindings.delete)
    )

    routes.add_get("/api/handoffs", guard(HANDOFF, handoff.handoffs))
    routes.add_get("/api/conversations/{id:\\d+}", guard(HANDOFF, handoff.conversation))
    routes.add_get("/api/conversations/{id:\\d+}/transcript", handoff.transcript)
    routes.add_post("/api/conversations/{id:\\d+}/reply", guard(HANDOFF, handoff.reply))
    routes.add_post("/api/conversations/{id:\\d+}/release", guard(HANDOFF, handoff.release))
    routes.add_post("/api/conversations/{id:\\d+}/handoff", guard(HANDOFF, handoff.take_over))
    routes.add_get("/api/chat/messages", handoff.chat_messages)

    routes.add_get("/api/usage", guard(USAGE, usage.usage_report))
