"""bot.stream."""
