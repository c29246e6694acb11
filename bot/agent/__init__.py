"""bot.agent."""
