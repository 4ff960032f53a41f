"""Officer notifications: channels that deliver alert events from the outbox, and the sender driving them."""
