"""The knowledge base on SQLite and PostgreSQL: store, vectors, pgvector, the kb CLI and API."""
