"""Storage, the CLI as typed in the README, the compose file."""
