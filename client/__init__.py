"""The `chat` terminal client."""
