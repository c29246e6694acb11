"""bot.web.sandbox."""
