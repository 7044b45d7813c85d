"""A worker whose passes fail because of the database says so in one line, waits longer and
longer between tries, and says when its passes succeed again; a fault of its own code keeps
its traceback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from service import create_app
from service.worker.runner import Worker
from tests.push.test_retention import running
from tests.support.settings import make_settings
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until


def said(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "reach.worker" and text in r.getMessage()]


def test_a_database_never_migrated_is_one_line_each_pass_not_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(f"sqlite:///{tmp_path}/never-migrated.sqlite3"))
    loop = Worker(app, name="unmigrated-worker")
    with caplog.at_level(logging.INFO, logger="reach.worker"), running(loop):
        wait_until(lambda: len(said(caplog, "no Reach tables")) >= 2, what="two failed passes")
    failed = said(caplog, "no Reach tables")
    assert [r.exc_info for r in failed] == [None] * len(failed)
    assert "reach db upgrade" in failed[0].getMessage()
    assert [r.__dict__["failed_passes"] for r in failed[:2]] == [1, 2]
    # The second try came after a longer wait than the idle loop's 0.5 s.
    assert failed[1].created - failed[0].created >= 0.9


@pytest.mark.postgres
def test_while_postgresql_is_away_each_pass_is_one_warning_and_the_return_is_told(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    at = make_url(database_url)
    proxy = TcpProxy(at.host or "127.0.0.1", at.port or 5432).up()
    try:
        through = at.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        loop = Worker(create_app(make_settings(through)), name="cut-off-worker")
        with caplog.at_level(logging.INFO, logger="reach.worker"), running(loop):
            proxy.down()
            wait_until(
                lambda: len(said(caplog, "database unavailable")) >= 2, what="two failed passes"
            )
            proxy.up()
            wait_until(
                lambda: said(caplog, "succeed again"), timeout=15, what="a pass to succeed again"
            )
    finally:
        proxy.down()
    failed = said(caplog, "database unavailable")
    assert [r.exc_info for r in failed] == [None] * len(failed)
    assert [r.levelname for r in failed] == ["WARNING"] * len(failed)
    assert said(caplog, "succeed again")[0].__dict__["failed_passes"] == len(failed)
    assert said(caplog, "pass failed; retrying") == []  # nothing logged with a traceback
