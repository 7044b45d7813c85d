"""PostgreSQL's own CPU per statement, from its `log_statement_stats` reports.

With `log_statement_stats` on, PostgreSQL reports the CPU (user + system, from getrusage) that
each statement took in its backend: one report per message of the extended protocol (parse,
bind, execute) and one per simple query (BEGIN, COMMIT, VACUUM...). Here the reports of one
database are added up per statement, the statement's text normalised (whitespace collapsed, a
list of parameters `$1, $2, ...` as one `$n...`), so a benchmark can say which statement costs
PostgreSQL what per bid or per job.

Two ways to collect them:
- `Notices`: on connections this process opens (`client_min_messages = log` sends the reports to
  the client as notices); used by `bench_worker --server-stats`.
- `ServerLog`: for processes it cannot reach into (the API, `reach worker`), the settings go on
  the database (`ALTER DATABASE ... SET`, for connections opened afterwards) and the reports are
  read from the server's log file (`BENCH_PG_LOG`, default the Debian cluster's log) between two
  offsets; used by `cpu_per_bid --server-stats`.

The reports cost the server CPU of their own (three per statement of the extended protocol), so a
run that collects them measures where PostgreSQL's time goes, not how much it is: its totals are
not comparable with runs without them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench import common

PG_LOG = Path(os.environ.get("BENCH_PG_LOG", "/var/log/postgresql/postgresql-15-main.log"))
_CPU = re.compile(r"([0-9.]+) s user, ([0-9.]+) s system")
_PARAMS = re.compile(r"\$\d+(?:, \$\d+)+")
_ENTRY = re.compile(r"^\S+ \S+ \S+ \[(\d+)\] \S*@(\S*) (LOG|DETAIL|STATEMENT):  (.*)$")
LABEL_CHARS = 110


def label(statement: str) -> str:
    """The statement's text as one short line: whitespace collapsed, parameter lists folded."""
    text = _PARAMS.sub("$n...", " ".join(statement.split()))
    return text[:LABEL_CHARS] + ("..." if len(text) > LABEL_CHARS else "")


def cpu_seconds(detail: str) -> float | None:
    """User + system seconds of one report's DETAIL ("! system usage stats: ...")."""
    found = _CPU.search(detail)
    return None if found is None else float(found[1]) + float(found[2])


class Tally:
    """CPU seconds and executions per statement label."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.prepare: dict[str, float] = {}  # of which parse and bind (planning, parameters)
        self.calls: dict[str, int] = {}

    def add(self, statement_label: str, report: str, seconds: float) -> None:
        self.cpu[statement_label] = self.cpu.get(statement_label, 0.0) + seconds
        if report.startswith(("PARSE", "BIND")):
            self.prepare[statement_label] = self.prepare.get(statement_label, 0.0) + seconds
        else:  # one execution: EXECUTE or QUERY
            self.calls[statement_label] = self.calls.get(statement_label, 0) + 1

    def merge(self, other: Tally) -> None:
        for mine, theirs in ((self.cpu, other.cpu), (self.prepare, other.prepare)):
            for key, seconds in theirs.items():
                mine[key] = mine.get(key, 0.0) + seconds
        for key, calls in other.calls.items():
            self.calls[key] = self.calls.get(key, 0) + calls

    def summary(self) -> list[dict[str, Any]]:
        """[{statement, cpu_ms, prepare_ms, calls}], the costliest first."""
        rows = [
            {
                "statement": k,
                "cpu_ms": v * 1000,
                "prepare_ms": self.prepare.get(k, 0.0) * 1000,
                "calls": self.calls.get(k, 0),
            }
            for k, v in self.cpu.items()
        ]
        return sorted(rows, key=lambda r: -r["cpu_ms"])


def table(statements: list[dict[str, Any]], per: float, unit: str, top: int = 14) -> str:
    """Markdown table: PostgreSQL CPU ms per `unit` (`per` of them), share, calls per unit."""
    total = sum(s["cpu_ms"] for s in statements) or 1.0
    rows = [
        [
            f"{s['cpu_ms'] / per:.4f}",
            f"{100 * s['cpu_ms'] / total:.1f}%",
            f"{s['calls'] / per:.3f}",
            f"{s['cpu_ms'] / s['calls']:.3f}" if s["calls"] else "-",
            f"{s['prepare_ms'] / s['calls']:.3f}" if s["calls"] else "-",
            s["statement"],
        ]
        for s in statements[:top]
    ]
    rest = statements[top:]
    if rest:
        rest_ms = sum(s["cpu_ms"] for s in rest)
        rest = [f"{rest_ms / per:.4f}", f"{100 * rest_ms / total:.1f}%", "", "", ""]
        rows.append([*rest, "the rest"])
    rows.append([f"{total / per:.4f}", "100%", "", "", "", "all"])
    return common.table(
        [
            f"PG CPU ms/{unit}",
            "share",
            f"calls/{unit}",
            "ms per call",
            "of which parse and bind",
            "statement",
        ],
        rows,
    )


class Notices:
    """Collects the reports of the connections of a SQLAlchemy engine of this process."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.on = False
        self.tally = Tally()
        self.current = "(connect)"
        event.listen(engine, "connect", self._connect)
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", lambda *_: self._set("COMMIT"))
        event.listen(engine, "rollback", lambda *_: self._set("ROLLBACK"))
        event.listen(engine.pool, "reset", lambda *_: self._set("ROLLBACK (the pool's reset)"))
        engine.dispose()  # every connection from now on reports

    def _connect(self, dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.add_notice_handler(self._notice)
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET client_min_messages = log")
            cursor.execute("SET log_statement_stats = on")
        dbapi_connection.commit()

    def _statement(self, _c: Any, _cur: Any, statement: str, _p: Any, _x: Any, many: bool) -> None:
        self._set(label(statement) + (" [executemany]" if many else ""))

    def _set(self, statement_label: str) -> None:
        self.current = statement_label

    def _notice(self, diag: Any) -> None:
        report = diag.message_primary or ""
        if self.on and report.endswith("STATISTICS"):
            seconds = cpu_seconds(diag.message_detail or "")
            if seconds is not None:
                self.tally.add(self.current, report, seconds)


class ServerLog:
    """Turns the reports on for one database and reads them from the server's log, whose lines
    start with Debian's `log_line_prefix` (`%m [%p] %q%u@%d `: time, backend, user@database)."""

    SETTINGS = ("log_statement_stats", "log_min_error_statement")

    def __init__(self, database: str, path: Path = PG_LOG) -> None:
        self.database = database
        self.path = path
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise SystemExit(
                f"cannot read PostgreSQL's log {path} ({exc}): run as a user who can, or set "
                "BENCH_PG_LOG to the cluster's log file (pg_lsclusters shows it)"
            ) from exc

    def enable(self) -> None:
        """For connections opened from now on (start the system after this)."""
        common.psql(f"alter database {self.database} set log_statement_stats = on")
        # Every report then names its statement (a STATEMENT line).
        common.psql(f"alter database {self.database} set log_min_error_statement = log")

    def disable(self) -> None:
        for setting in self.SETTINGS:
            common.psql(f"alter database {self.database} reset {setting}")

    def offset(self) -> int:
        return self.path.stat().st_size

    def read(self, start: int, end: int) -> Tally:
        """The reports of this database logged between two offsets, added up per statement."""
        with self.path.open("rb") as f:
            f.seek(start)
            text = f.read(end - start).decode("utf-8", "replace")
        return self.parse(text.splitlines())

    def parse(self, lines: Iterable[str]) -> Tally:
        """Each report is three entries of one backend: LOG (which report), DETAIL (its CPU,
        on a continuation line) and STATEMENT (the text, maybe over several lines)."""
        tally = Tally()
        reports: dict[str, tuple[str, float | None]] = {}  # by backend: (report, seconds)
        entry: tuple[str, str, list[str]] | None = None  # (backend, kind, lines)

        def finish(pid: str, kind: str, body: list[str]) -> None:
            if kind == "DETAIL" and pid in reports:
                reports[pid] = (reports[pid][0], cpu_seconds("\n".join(body)))
            elif kind == "STATEMENT":
                report, seconds = reports.pop(pid, ("", None))
                if seconds is not None:
                    tally.add(label("\n".join(body)), report, seconds)

        for line in lines:
            found = _ENTRY.match(line)
            if found is None:
                if entry is not None:  # a continuation line (tab-indented)
                    entry[2].append(line)
                continue
            if entry is not None:
                finish(*entry)
            entry = None
            pid, database, kind, text = found.groups()
            if database != self.database:
                continue
            if kind == "LOG":
                if text.endswith("STATISTICS"):
                    reports[pid] = (text, None)
                else:
                    reports.pop(pid, None)
                continue
            entry = (pid, kind, [text])
        if entry is not None:
            finish(*entry)
        return tally
