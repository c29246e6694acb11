"""bot.admin."""
