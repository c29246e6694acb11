"""The agent with fake model servers: backends, memory, tool calls."""
