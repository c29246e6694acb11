"""What happens to one message: intake, dedup, coalescing, rate limits, rules, the turn itself."""
