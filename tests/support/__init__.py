"""Shared test helpers: deterministic clock and ids, in-memory harnesses, test peers."""
