"""Human handoff: state, channels, notifications."""
