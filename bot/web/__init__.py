"""The web process: webhook routes, web chat, health, uploads; create_app wires them together."""
