"""Alembic migrations of the trial database (run through :mod:`promptsearch.storage`)."""
