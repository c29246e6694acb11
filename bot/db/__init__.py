"""bot.db."""
