"""bot.pipeline."""
