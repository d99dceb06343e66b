"""Background jobs (transport, like the Flask blueprints): the flexibility scheduler."""
