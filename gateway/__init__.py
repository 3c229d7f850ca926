"""The RSafe gateway: an OpenAI-compatible proxy that moderates requests and responses."""
