"""The cognition: the recursive engine (and, later, the chat agent and turns)."""
