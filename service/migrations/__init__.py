"""Alembic migrations; run with `reach db upgrade`."""
