"""The console's words per area, merged into the tables of bot/console/i18n.py."""
