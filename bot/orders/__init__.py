"""Orders: the value types, the backends (our SQL tables or the merchant's HTTP API)."""
