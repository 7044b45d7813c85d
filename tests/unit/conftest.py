"""Unit tests of pure rules: no database, no server."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def db_connection() -> None:
    """Replaces the suite's per-test transaction: these tests touch no database."""
    return None
