"""HTTP entry points: the ASGI server (Slack endpoint, health) and introspection."""
