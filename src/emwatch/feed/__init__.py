"""Feed: committed alert events fanned out to live subscribers (WebSocket clients)."""
