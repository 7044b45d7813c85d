"""PostgreSQL dropping a process's connections, as a restart does (tests of recovery)."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

_TERMINATE = text(
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :name"
)


def named(database_url: str, application_name: str) -> str:
    """`database_url` whose connections carry `application_name` (to be dropped later)."""
    url = make_url(database_url).update_query_dict({"application_name": application_name})
    return url.render_as_string(hide_password=False)


def drop_backends(database_url: str, application_name: str) -> int:
    """Terminate every backend of connections named `application_name`; how many."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as other:
            return int(other.execute(_TERMINATE, {"name": application_name}).scalar_one())
    finally:
        engine.dispose()
