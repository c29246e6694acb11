"""Platform adapters against fake platform APIs: sending, tokens, long connections,
webhook edges."""
