"""Order lookup: the merchant HTTP backend, the local store, the orders CLI."""
