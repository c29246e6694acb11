"""bot.handoff."""
