"""The customer-service agent: the tool loop, prompt, multi-turn memory and the trace of a turn."""
