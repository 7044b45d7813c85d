"""The PostgreSQL session `reach db upgrade` and `downgrade` migrate in: named, one run at a time,
and never holding up requests for long behind a table lock it waits for."""

from service.migrations.session.lock import (
    IDLE,
    LOCK_REPORT_SECONDS,
    LOCK_RETRY_SECONDS,
    MIGRATION_LOCK,
    Holder,
    holder,
    one_at_a_time,
)
from service.migrations.session.lock_retries import (
    BACKOFF_CAP_SECONDS,
    LOCK_NOT_AVAILABLE,
    with_lock_retries,
)
from service.migrations.session.patience import MigrationError, Patience, application_name, prepare

__all__ = [
    "BACKOFF_CAP_SECONDS",
    "IDLE",
    "LOCK_NOT_AVAILABLE",
    "LOCK_REPORT_SECONDS",
    "LOCK_RETRY_SECONDS",
    "MIGRATION_LOCK",
    "Holder",
    "MigrationError",
    "Patience",
    "application_name",
    "holder",
    "one_at_a_time",
    "prepare",
    "with_lock_retries",
]
