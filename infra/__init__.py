"""Clients to the outside world: PostgreSQL, Redis, the AI provider; readiness probes."""
