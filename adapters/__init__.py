"""Platform adapters: verify, decrypt and parse webhooks; send replies through platform APIs."""
