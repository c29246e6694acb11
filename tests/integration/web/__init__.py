"""The web process: identities, the admin API."""
