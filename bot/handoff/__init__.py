"""Human handoff: when to hand over, the queue and claims, presence, agent replies, notices."""
