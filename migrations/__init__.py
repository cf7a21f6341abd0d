"""Alembic migrations; shipped inside the package as `chatd.migrations`."""
