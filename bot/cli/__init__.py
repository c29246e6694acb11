"""The `bot` command: up, serve, worker, stream, simulate, kb, orders, users."""
