"""Faults injected under load (Redis paused or down, workers killed): nothing lost, nothing
answered twice; each test prints its counts."""
