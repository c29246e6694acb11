"""Storage through SQLModel (SQLite embedded, PostgreSQL in production): tables and queries."""
