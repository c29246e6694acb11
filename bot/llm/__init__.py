"""Model backends (vLLM via the OpenAI client, DashScope) and the router between them."""
