"""The admin HTTP API under /admin/ (bearer tokens with scopes): knowledge, rules, handoff."""
