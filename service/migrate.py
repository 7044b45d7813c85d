"""Running Alembic from code: `reach db upgrade`, the embedded start-up, the tests."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Connection

from service.migrations.session import MigrationError, Patience

MIGRATIONS = Path(__file__).parent / "migrations"
RELATIVE = re.compile(r"^([+-])(\d+)$")

log = logging.getLogger("reach.migrate")

__all__ = [
    "MigrationError",
    "Patience",
    "below",
    "current",
    "downgrade",
    "history",
    "resolve",
    "upgrade",
]


def alembic_config(
    url: str | None = None, connection: Connection | None = None, patience: Patience | None = None
) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    if patience is not None:
        config.attributes["patience"] = patience
    return config


def upgrade(
    url: str | None = None,
    connection: Connection | None = None,
    revision: str = "heads",
    patience: Patience | None = None,
) -> None:
    if url and RELATIVE.match(revision):
        revision = resolve(revision, current(url))
    command.upgrade(alembic_config(url, connection, patience), revision)


def downgrade(
    url: str | None = None,
    connection: Connection | None = None,
    revision: str = "base",
    patience: Patience | None = None,
) -> None:
    if url and RELATIVE.match(revision):
        revision = resolve(revision, current(url))
    command.downgrade(alembic_config(url, connection, patience), revision)


def resolve(relative: str, at: list[str]) -> str:
    """The revision `-N` (or `+N`) names from where the database is now, worked out once before
    anything runs: Alembic works a relative target out again on each attempt, so a step that
    gave way to a lock and was tried again after the migrations before it had committed went
    N steps on from there, further than asked."""
    matched = RELATIVE.match(relative)
    assert matched is not None
    sign, count = matched.group(1), int(matched.group(2))
    going = "back" if sign == "-" else "on"
    if len(at) > 1:
        raise MigrationError(
            f"the database is at {len(at)} revisions at once ({', '.join(at)}), so "
            f"--revision {relative} does not say which of them to step {going} from: give the "
            f"revision to go {going} to (`reach db history` lists them)"
        )
    scripts = ScriptDirectory.from_config(alembic_config())
    known = {script.revision for script in scripts.walk_revisions()}
    if not set(at) <= known:
        return relative  # a newer release migrated it: the migration says so, and runs nothing
    here: str | None = at[0] if at else None
    for step in range(count):
        if sign == "-":
            if here is None:
                raise MigrationError(
                    f"--revision {relative} steps back below base: {at[0] if at else 'base'} is "
                    f"{step} step(s) above it"
                )
            below = _script(scripts, here).down_revision
            if isinstance(below, (tuple, list)):
                raise MigrationError(
                    f"--revision {relative} steps back through {here}, which merges "
                    f"{', '.join(below)}: give the revision to go back to (`reach db history` "
                    f"lists them)"
                )
            here = below
        else:
            after = (
                sorted(scripts.get_bases())
                if here is None
                else sorted(_script(scripts, here).nextrev)
            )
            if not after:
                raise MigrationError(
                    f"--revision {relative} steps on past the newest revision: "
                    f"{at[0] if at else 'base'} is {step} step(s) below it"
                )
            if len(after) > 1:
                raise MigrationError(
                    f"--revision {relative} steps on from {here or 'base'} into "
                    f"{', '.join(after)}: give the revision to go on to (`reach db history` "
                    f"lists them)"
                )
            here = after[0]
    target = here or "base"
    log.info("--revision %s from %s is %s", relative, ", ".join(at) or "base", target)
    return target


def below(target: str, at: list[str]) -> tuple[str, bool] | None:
    """The revision `target` names, and whether it is below where the database is (one of the
    migrations it has passed) rather than above it; None when it is where the database is, or
    when that cannot be told (heads, base, a revision of another release): Alembic says so."""
    scripts = ScriptDirectory.from_config(alembic_config())
    try:
        script = scripts.get_revision(target)
        passed = {step.revision for step in scripts.iterate_revisions(tuple(at), "base")}
    except (CommandError, RevisionError):
        return None
    if script is None or script.revision in at:
        return None
    return script.revision, script.revision in passed


def _script(scripts: ScriptDirectory, revision: str) -> Script:
    script = scripts.get_revision(revision)
    assert script is not None
    return script


def current(url: str) -> list[str]:
    """The revisions the database is at: one, or several between 0002 and 0005's merge."""
    from service.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def history() -> list[Script]:
    """Every migration, newest first."""
    return list(ScriptDirectory.from_config(alembic_config()).walk_revisions())
