"""HTTP API and WebSocket feed for the command center."""
