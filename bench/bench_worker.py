"""The push worker's own cost: CPU per job, SQL statements per pass, wall time.

Seeds N push jobs (`--jobs`, for `--users` users with `--devices` active devices each) straight
into PostgreSQL database `reach_bench_worker` (ours alone: dropped and recreated for every
source, dropped at the end), then drains them in-process with the real worker loop
(`Worker.run_forever`, stopped at the first pass that sends nothing) and the log backend
(`PUSH_BACKEND=log`, LOG_LEVEL=WARNING: nothing is printed), measuring this process's CPU
(`time.process_time`), the CPU of PostgreSQL's backends of the database, and wall time. The
statement counts come from separate single passes (`Dispatcher.run`, and `Worker.run_once`
with its bid-expiry and break-resume looks) over 0, 1, 5 and `--batch` due jobs, counted with a
`before_cursor_execute` listener (an executemany counts once; COMMITs and pool pre-pings are
not statements: they are counted apart). Each `--batch` (PUSH_BATCH) is measured on its own:
32 is the default, 1 shows what a pass costs by itself (a lightly loaded worker takes one job
per pass).

`--server-stats` adds one more drain with PostgreSQL's `log_statement_stats` on for the worker's
connections (`bench/pg_statements.py`): PostgreSQL's own CPU per job for each statement, COMMIT
and ROLLBACK included. The reports cost the server CPU too, so that drain is not a timed one.

Each source runs in a subprocess of its own with that source first on sys.path, so "before"
and "after" are measured in the same run on the same machine:

    .venv/bin/python -m bench.bench_worker           # see "Sources"; batch 32 and 1
    .venv/bin/python -m bench.bench_worker --sources head worktree --reps 5 --db postgres sqlite
    .venv/bin/python -m bench.bench_worker --sources 0753682 head

Sources: `head` (the committed HEAD, exported with `git archive` to bench/out/src/<sha>),
`head+worker` (HEAD with the work tree's service/worker/ and service/models/push.py: the worker
change alone, whatever else is half-edited in the work tree), `worktree`, a directory holding
service/ and schemas/, or any commit (exported like HEAD). The default compares HEAD with
`head+worker` when the work tree changes the worker, and otherwise the last commit that changed
it with its parent. JSON: bench/out/worker.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import common, pg_statements
from bench.common import log

DB_NAME = "reach_bench_worker"
WORKER_FILES = ("service/worker", "service/models/push.py")


# --- the parent: sources, children, table ----------------------------------------------------


def _git(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(common.ROOT), *args], check=check, capture_output=True, text=True
    )


def _commit_of(rev: str) -> str | None:
    found = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    return found.stdout.strip() or None


def _export(commit: str, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(common.ROOT), "archive", commit, "service", "schemas", "wsgi.py"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def _exported(commit: str) -> Path:
    dest = common.OUT / "src" / commit[:12]
    if not (dest / "service" / "__init__.py").exists():
        _export(commit, dest)
    return dest


def default_sources() -> list[str]:
    """HEAD against the work tree's worker change; with no such change, the last commit that
    changed the worker against the commit before it."""
    if _git("diff", "--quiet", "HEAD", "--", *WORKER_FILES, check=False).returncode:
        return ["head", "head+worker"]
    last = _git("log", "-1", "--format=%H", "--", *WORKER_FILES).stdout.strip()
    return [f"{last[:12]}~1", last[:12]]


def resolve_source(name: str) -> tuple[Path, str]:
    """(directory to put first on sys.path, what it is)."""
    sha = _git("rev-parse", "HEAD").stdout.strip()[:12]
    if name == "worktree":
        return common.ROOT, "work tree"
    if name == "head":
        return _exported(sha), f"HEAD {sha}"
    if name == "head+worker":
        dest = common.OUT / "src" / f"{sha}+worker"
        shutil.rmtree(dest, ignore_errors=True)
        _export(sha, dest)
        for rel in WORKER_FILES:
            src, dst = common.ROOT / rel, dest / rel
            if src.is_dir():
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, dst)
        return dest, f"HEAD {sha} + work tree's {', '.join(WORKER_FILES)}"
    path = Path(name).resolve()
    if (path / "service" / "__init__.py").exists():
        return path, str(path)
    commit = _commit_of(name)
    if commit is None:
        raise SystemExit(
            f"--sources: {name} is not head, head+worker, worktree, a source tree or a commit"
        )
    return _exported(commit), f"commit {commit[:12]} ({name})"


def run_child(source: str, db: str, batch: int, args: argparse.Namespace) -> dict[str, Any]:
    path, note = resolve_source(source)
    tag = source.strip("/").replace("/", "_").replace("+", "_")
    out = common.OUT / "worker" / f"{tag}-{db}-{batch}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "BENCH_SRC": str(path),
        "BENCH_DB": DB_NAME,
        "PYTHONPATH": os.pathsep.join([str(path), str(common.ROOT)]),
    }
    cmd = [
        common.VENV_PY,
        "-m",
        "bench.bench_worker",
        "--child",
        str(out),
        "--db",
        db,
        "--jobs",
        str(args.jobs),
        "--users",
        str(args.users),
        "--devices",
        str(args.devices),
        "--batch",
        str(batch),
        "--reps",
        str(args.reps),
        *(["--server-stats"] if args.server_stats else []),
    ]
    log(f"== {source} ({note}) on {db}, batch {batch}")
    done = subprocess.run(cmd, env=env, cwd=str(common.ROOT), timeout=args.timeout)
    if done.returncode != 0:
        raise SystemExit(f"the {source} run on {db} failed ({done.returncode})")
    result: dict[str, Any] = json.loads(out.read_text())
    result.update(source=source, source_note=note, batch=batch)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sources",
        nargs="+",
        help="head, head+worker, worktree, a source tree or a commit (default: HEAD vs the work "
        "tree's worker change, or the last worker commit vs its parent when there is none)",
    )
    parser.add_argument("--db", nargs="+", default=["postgres"], choices=["postgres", "sqlite"])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument(
        "--batch", type=int, nargs="+", default=[32, 1], help="PUSH_BATCH values (32: default)"
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--server-stats",
        action="store_true",
        help="one more drain: PostgreSQL's CPU per statement (log_statement_stats; postgres only)",
    )
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.users % 2:
        raise SystemExit("--users must be even (couples)")
    args.sources = args.sources or default_sources()
    runs = []
    try:
        for db in args.db:
            for batch in args.batch:
                for source in args.sources:
                    runs.append(run_child(source, db, batch, args))
    finally:
        common.psql(
            "select pg_terminate_backend(pid) from pg_stat_activity "
            f"where datname = '{DB_NAME}' and pid <> pg_backend_pid()"
        )
        common.psql(f"drop database if exists {DB_NAME}")
    report(runs, args)


def per_pass(passes: dict[str, Any], how: str, what: str) -> str:
    """'jobs:count' of each single pass measured, e.g. "0:1 1:6 5:6 32:6"."""
    return " ".join(f"{k}:{passes[k][how][what]}" for k in sorted(passes, key=int))


def report(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    rows = []
    for r in runs:
        d = r["drain"]
        passes = r["passes"]
        rows.append(
            [
                r["source"],
                r["db"],
                r["batch"],
                d["median_cpu_ms_per_job"],
                f"{d['min_cpu_ms_per_job']:.2f}-{d['max_cpu_ms_per_job']:.2f}",
                d["median_pg_cpu_ms_per_job"],
                d["median_wall_ms_per_job"],
                d["median_passes"],
                d["median_housekeeping"],
                per_pass(passes, "dispatcher", "statements"),
                per_pass(passes, "run_once", "statements"),
                per_pass(passes, "run_once", "commits"),
            ]
        )
    print()
    print(
        f"Worker drain: {args.jobs} jobs, {args.users} users x {args.devices} devices, "
        f"log backend, {args.reps} reps (median)"
    )
    print(
        common.table(
            [
                "source",
                "db",
                "batch",
                "worker CPU ms/job",
                "range",
                "PG CPU ms/job",
                "wall ms/job",
                "passes",
                "expiry looks",
                "statements per Dispatcher pass (jobs:n)",
                "per run_once",
                "commits per run_once",
            ],
            rows,
        )
    )
    for r in runs:
        if r.get("server_stats"):
            print()
            print(f"PostgreSQL CPU per statement: {r['source']}, {r['db']}, batch {r['batch']}")
            stats = r["server_stats"]
            print(pg_statements.table(stats["statements"], stats["jobs"], "job"))
    common.write_result(
        "worker",
        {
            "params": {k: v for k, v in vars(args).items() if k != "child"},
            "runs": runs,
        },
    )


# --- the child: one source, one database ------------------------------------------------------


class Counter:
    """Statements, executemany calls, COMMITs and pool checkouts on an engine."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.engine = engine
        self.on = False
        self.statements: list[str] = []
        self.executemany = 0
        self.commits = 0
        self.checkouts = 0
        event.listen(engine, "before_cursor_execute", self._stmt)
        event.listen(engine, "commit", self._commit)
        event.listen(engine.pool, "checkout", self._checkout)

    def _stmt(self, _c: Any, _cur: Any, statement: str, _p: Any, _ctx: Any, many: bool) -> None:
        if self.on:
            self.statements.append(" ".join(statement.split())[:160])
            self.executemany += bool(many)

    def _commit(self, _conn: Any) -> None:
        if self.on:
            self.commits += 1

    def _checkout(self, *_: Any) -> None:
        if self.on:
            self.checkouts += 1

    def start(self) -> None:
        self.statements, self.executemany, self.commits, self.checkouts = [], 0, 0, 0
        self.on = True

    def stop(self) -> dict[str, Any]:
        self.on = False
        return {
            "statements": len(self.statements),
            "executemany": self.executemany,
            "commits": self.commits,
            "checkouts": self.checkouts,
            "sql": self.statements,
        }


class StopWhenDrained:
    """Wraps the worker's dispatcher: stops `run_forever` after the first pass that sends
    nothing; counts passes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.worker: Any = None
        self.passes = 0
        self.error: BaseException | None = None

    def run(self, session: Any, name: str) -> int:
        self.passes += 1
        try:
            sent = int(self.inner.run(session, name))
        except BaseException as exc:
            self.error = exc
            self.worker.stop()
            raise
        if sent == 0 or self.passes > 100_000:
            self.worker.stop()
        return sent

    def __getattr__(self, name: str) -> Any:
        # The worker also reads the dispatcher's `batch` and `last_claimed`.
        return getattr(self.inner, name)


def _pg_backend_cpu() -> float:
    import psutil

    total = 0.0
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if cmd.startswith("postgres:") and f" {DB_NAME} " in cmd:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue
    return total


def child(args: argparse.Namespace) -> None:
    db_kind, batch = args.db[0], args.batch[0]
    url = common.fresh_postgres() if db_kind == "postgres" else common.fresh_sqlite("worker")
    log(f"  seeding {args.users} users x {args.devices} devices ({common.SRC_NOTE})")
    users = seed_users(url, args.users, args.devices)

    from service import create_app
    from service.config import Settings
    from service.extensions import db
    from service.push.log import LogBackend
    from service.worker.dispatch import Dispatcher
    from service.worker.runner import Worker

    app = create_app(
        Settings(
            DATABASE_URL=url,
            SECRET_KEY=common.SECRET,
            WORKER_MODE="separate",
            LOG_LEVEL="WARNING",
            RATELIMIT_ENABLED=False,
            PUSH_BATCH=batch,
        )
    )
    with app.app_context():
        engine = db.engine
    counter = Counter(engine)
    dispatcher = Dispatcher(LogBackend(), batch=batch)

    def one_pass(jobs: int, rep: int, how: str) -> dict[str, Any]:
        seed_jobs(app, users, jobs, f"{how}{jobs}-{rep}")
        worker = Worker(app, name="bench-worker", dispatcher=dispatcher)
        counter.start()
        if how == "dispatcher":
            with app.app_context(), db.scope() as session:
                sent = dispatcher.run(session, "bench-worker")
        else:
            sent = worker.run_once().pushes
        stats = counter.stop()
        stats["sent"] = sent
        finish(app)
        return stats

    # Warm up (statement caches, connections), then the counted single passes.
    for warm in range(2):
        one_pass(batch, warm, "dispatcher")
        one_pass(batch, warm, "run_once")
    passes: dict[str, dict[str, Any]] = {}
    for k in sorted({0, 1, 5, batch}):
        passes[str(k)] = {
            "dispatcher": one_pass(k, 0, "dispatcher"),
            "run_once": one_pass(k, 0, "run_once"),
        }
        log(
            f"  pass over {k} jobs: Dispatcher {passes[str(k)]['dispatcher']['statements']} "
            f"statements, run_once {passes[str(k)]['run_once']['statements']} statements, "
            f"{passes[str(k)]['run_once']['commits']} commits"
        )

    drains = []

    def new_drain(tag: str) -> tuple[Any, StopWhenDrained]:
        """`args.jobs` jobs seeded, and the worker that drains them (idle 0.5 s, as `reach
        worker`), stopped by its dispatcher's wrapper after the first pass that sends nothing."""
        seed_jobs(app, users, args.jobs, tag)
        wrapper = StopWhenDrained(dispatcher)
        wrapper.worker = Worker(app, name="bench-worker", dispatcher=wrapper)
        return wrapper.worker, wrapper

    def all_done(wrapper: StopWhenDrained) -> None:
        if wrapper.error is not None:
            raise wrapper.error
        check = finish(app)
        if check != {"done": args.jobs}:
            raise SystemExit(f"not every job was done: {check}")

    for rep in range(args.reps):
        worker, wrapper = new_drain(f"drain-{rep}")
        looks, undo = count_housekeeping()
        pg0 = _pg_backend_cpu() if db_kind == "postgres" else 0.0
        w0, c0 = time.perf_counter(), time.process_time()
        worker.run_forever()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        undo()
        pg = (_pg_backend_cpu() - pg0) if db_kind == "postgres" else None
        all_done(wrapper)
        drain = {
            "cpu_ms_per_job": cpu * 1000 / args.jobs,
            "wall_ms_per_job": wall * 1000 / args.jobs,
            "pg_cpu_ms_per_job": pg * 1000 / args.jobs if pg is not None else None,
            "passes": wrapper.passes,
            "housekeeping": looks[0],
            "cpu_s": cpu,
            "wall_s": wall,
        }
        drains.append(drain)
        log(
            f"  drain {rep + 1}/{args.reps}: {drain['cpu_ms_per_job']:.3f} ms CPU/job, "
            f"{drain['wall_ms_per_job']:.3f} ms wall/job, PG {drain['pg_cpu_ms_per_job']} ms "
            f"CPU/job, {wrapper.passes} passes, {looks[0]} bid-expiry looks"
        )
    server_stats = None
    if args.server_stats and db_kind == "postgres":
        notices = pg_statements.Notices(engine)
        worker, wrapper = new_drain("server-stats")
        notices.on = True
        worker.run_forever()
        notices.on = False
        all_done(wrapper)
        statements = notices.tally.summary()
        server_stats = {"jobs": args.jobs, "passes": wrapper.passes, "statements": statements}
        total = sum(s["cpu_ms"] for s in statements)
        log(f"  with log_statement_stats: PostgreSQL {total / args.jobs:.3f} ms CPU/job")
    app.extensions["reach.db"].engine.dispose()

    def med(key: str) -> Any:
        vals = [d[key] for d in drains if d[key] is not None]
        return statistics.median(vals) if vals else None

    summary = {
        "db": db_kind,
        "passes": passes,
        "server_stats": server_stats,
        "drain": {
            "reps": drains,
            "median_cpu_ms_per_job": med("cpu_ms_per_job"),
            "min_cpu_ms_per_job": min(d["cpu_ms_per_job"] for d in drains),
            "max_cpu_ms_per_job": max(d["cpu_ms_per_job"] for d in drains),
            "median_wall_ms_per_job": med("wall_ms_per_job"),
            "median_pg_cpu_ms_per_job": med("pg_cpu_ms_per_job"),
            "median_passes": med("passes"),
            "median_housekeeping": med("housekeeping"),
        },
    }
    Path(args.child).write_text(json.dumps(summary, indent=2, default=str))


def count_housekeeping() -> tuple[list[int], Any]:
    """Count the worker's bid-expiry looks (each is a transaction); returns the undo."""
    from service.services import bids

    real = bids.expire_due
    looks = [0]

    def counting(*args: Any, **kwargs: Any) -> Any:
        looks[0] += 1
        return real(*args, **kwargs)

    bids.expire_due = counting  # type: ignore[assignment]
    return looks, lambda: setattr(bids, "expire_due", real)


def seed_users(url: str, users: int, devices: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(user id, couple id) of `users` paired users, each with `devices` active devices."""
    couples = common.seed_couples(url, users // 2, devices=True)  # one android device each
    from sqlalchemy import create_engine, insert

    from service.models import Device, User

    engine = create_engine(url)
    ids = [uuid.UUID(u) for c in couples for u in (c.a_id, c.b_id)]
    now = datetime.now(UTC)
    extra = [
        {
            "id": uuid.uuid4(),
            "user_id": user,
            "platform": "ios" if n % 2 else "android",
            "push_token": f"tok-{user}-{n}",
            "active": True,
            "created_at": now,
            "updated_at": now,
        }
        for user in ids
        for n in range(1, devices)
    ]
    with engine.begin() as conn:
        if extra:
            conn.execute(insert(Device.__table__), extra)
        rows = conn.execute(User.__table__.select().where(User.__table__.c.id.in_(ids))).all()
    engine.dispose()
    return [(row.id, row.couple_id) for row in rows]


def seed_jobs(app: Any, users: list[tuple[uuid.UUID, uuid.UUID]], count: int, tag: str) -> None:
    """`count` due bid pushes (the payload `push_outbox.bid_created` writes), round robin."""
    from sqlalchemy import insert

    from service.extensions import db
    from service.models import PushJob

    now = datetime.now(UTC)
    rows = []
    for i in range(count):
        user, couple = users[i % len(users)]
        bid_id = uuid.uuid4()
        rows.append(
            {
                "kind": "bid.created",
                "dedupe_key": f"bench:{tag}:{i}",
                "couple_id": couple,
                "recipient_id": user,
                "cursor": i + 1,
                "payload": {
                    "title": "A is reaching for you",
                    "body": "They're thinking of you.",
                    "data": {"type": "bid.created", "bid_id": str(bid_id), "cursor": str(i + 1)},
                    "collapse_key": f"bid:{bid_id}",
                    "priority": "high",
                    "category": "BID",
                    "thread_id": f"couple:{couple}",
                },
                "urgent": False,
                "state": "pending",
                "available_at": now - timedelta(seconds=1) + timedelta(microseconds=i),
                "expires_at": now + timedelta(days=1),
                "attempts": 0,
                "created_at": now,
            }
        )
    with app.app_context(), db.engine.begin() as conn:
        for start in range(0, len(rows), 1000):
            conn.execute(insert(PushJob.__table__), rows[start : start + 1000])


def finish(app: Any) -> dict[str, int]:
    """Job states left behind; then empty the outbox for the next measurement."""
    from sqlalchemy import func, select, text

    from service.extensions import db
    from service.models import PushJob

    with app.app_context(), db.engine.begin() as conn:
        states = dict(
            conn.execute(select(PushJob.state, func.count()).group_by(PushJob.state)).all()
        )
        if conn.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE push_attempts, push_deliveries, push_jobs"))
        else:
            for name in ("push_attempts", "push_deliveries", "push_jobs"):
                conn.execute(text(f"DELETE FROM {name}"))
    return {str(k): int(v) for k, v in states.items()}


if __name__ == "__main__":
    sys.exit(main())
