"""CLI commands, one module per stage; each exposes ``register(app)`` and imports heavy modules lazily."""
