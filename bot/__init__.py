"""Customer-service bot platform: core (settings, domain, agent, LLM router, web app, CLI)."""
