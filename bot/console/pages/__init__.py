"""The console pages, one module per area."""
