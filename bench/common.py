"""Shared plumbing for the benchmarks: processes, databases, seeding, statistics, output.

Everything here starts only on 127.0.0.1, ports 7100-7199, databases `reach_bench` and
`reach_bench_relay` (PostgreSQL) or a SQLite file under bench/out/, and cleans up what it
started.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
VENV_PY = str(ROOT / ".venv" / "bin" / "python")
REACH = str(ROOT / ".venv" / "bin" / "reach")


def _source_tree() -> tuple[Path, str]:
    """Which Reach is measured. BENCH_SRC=head (default): a snapshot of the committed HEAD,
    exported with `git archive` under bench/out/src/<sha> -- others edit the work tree while
    benchmarks run, and a half-edited tree is neither stable nor reproducible.
    BENCH_SRC=worktree: the work tree as it is. Any other value: a directory."""
    choice = os.environ.get("BENCH_SRC", "head")
    if choice == "worktree":
        return ROOT, "worktree"
    if choice != "head":
        return Path(choice).resolve(), choice
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    dest = ROOT / "bench" / "out" / "src" / sha[:12]
    if not (dest / "service" / "__init__.py").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "HEAD", "service", "schemas", "wsgi.py"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "service", "schemas"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    note = f"HEAD {sha[:12]}" + (
        " (work tree has uncommitted service/schemas edits: not measured)" if dirty else ""
    )
    return dest, note


SRC, SRC_NOTE = _source_tree()
# This process (seeding, in-process profiling) and every child import Reach from SRC.
sys.path.insert(0, str(SRC))
PG_SERVER = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
PG_DB = os.environ.get("BENCH_DB", "reach_bench")
PG_URL = f"{PG_SERVER}/{PG_DB}"
SECRET = "bench-secret-" + "x" * 40
PASSWORD = "correct horse battery staple"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def memory_app(**settings: Any) -> Any:
    """The service's app on SQLite in memory, for in-process probes of a request's parts."""
    from service import create_app
    from service.config import Settings

    return create_app(
        Settings(
            DATABASE_URL="sqlite://",
            SECRET_KEY=SECRET,
            WORKER_MODE="separate",
            LOG_LEVEL="WARNING",
            **settings,
        )
    )


# --- processes --------------------------------------------------------------------------------

_children: list[subprocess.Popen[Any]] = []


def _kill_all() -> None:
    for proc in list(_children):
        stop_process(proc)


atexit.register(_kill_all)


def _on_signal(signum: int, _frame: Any) -> None:
    _kill_all()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)


def start_process(
    cmd: Sequence[str], env: dict[str, str], log_path: Path, cwd: Path | None = None
) -> subprocess.Popen[Any]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        list(cmd),
        env=env,
        cwd=str(cwd or SRC),
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: we stop the whole group
    )
    _children.append(proc)
    return proc


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if proc in _children:
        _children.remove(proc)
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        # as gunicorn binds: connections of an earlier run in TIME_WAIT do not count
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return
        except Exception as exc:
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s: {last}")


def gunicorn_worker_pid(master_pid: int, timeout: float = 20.0) -> int:
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = psutil.Process(master_pid).children()
        if kids:
            return kids[0].pid
        time.sleep(0.1)
    raise RuntimeError("gunicorn worker did not start")


# The rate limiter on, as production runs it, with limits no benchmark reaches: every limited
# request is still counted (RESULTS.md, "What changed" 22). BENCH_RATELIMIT=false turns it off.
RATELIMIT_ON = os.environ.get("BENCH_RATELIMIT", "true").lower() != "false"
RATE_LIMITS = {
    name: "1000000 per minute"
    for name in (
        "RATELIMIT_BIDS",
        "RATELIMIT_REPAIRS",
        "RATELIMIT_AUTH",
        "RATELIMIT_AUTH_EMAIL",
        "RATELIMIT_JOIN",
        "RATELIMIT_JOIN_ADDRESS",
    )
}


# Every server's cap on open sockets (GUNICORN_WORKER_CONNECTIONS); BENCH_WORKER_CONNECTIONS
# raises it to find how many one API process holds (the open-files limit still applies).
WORKER_CONNECTIONS = os.environ.get("BENCH_WORKER_CONNECTIONS", "12000")
# The servers' open-files limit, SOFT or SOFT:HARD (BENCH_SERVER_OPEN_FILES=1024: the soft limit
# a container gets from containerd 2 or recent Docker); empty: the limit this script runs with.
SERVER_OPEN_FILES = os.environ.get("BENCH_SERVER_OPEN_FILES", "")


def base_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "RATELIMIT", "WORKER_MODE"))
    }
    env.update(
        {
            "SECRET_KEY": SECRET,
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "text",
            "GUNICORN_LOG_LEVEL": "warning",
            "PUSH_BACKEND": "log",
            "RATELIMIT_ENABLED": str(RATELIMIT_ON).lower(),
            **RATE_LIMITS,
            "ACCESS_TOKEN_SECONDS": str(6 * 3600),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join([str(SRC), str(ROOT)]),
        }
    )
    env.update(extra)
    return env


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[Any]
    worker_pid: int
    env: dict[str, str]
    extra: list[subprocess.Popen[Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        for p in self.extra:
            stop_process(p)
        stop_process(self.proc)


def start_gunicorn(name: str, app: str, port: int, env: dict[str, str], ready_path: str) -> Server:
    if not port_free(port):
        raise RuntimeError(f"port {port} is in use")
    # BENCH_GC_STATS in env: Reach's own settings plus a garbage-collector probe.
    probe = bool(env.get("BENCH_GC_STATS"))
    config = "python:bench.gc_probe_config" if probe else "python:service.gunicorn_config"
    nofile = SERVER_OPEN_FILES if ":" in SERVER_OPEN_FILES else f"{SERVER_OPEN_FILES}:"
    limited = ["prlimit", f"--nofile={nofile}", "--"] if SERVER_OPEN_FILES else []
    cmd = [
        *limited,
        VENV_PY,
        "-m",
        "gunicorn",
        "-c",
        config,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        app,
    ]
    proc = start_process(cmd, env, OUT / "logs" / f"{name}.log")
    wait_http(f"http://127.0.0.1:{port}{ready_path}", proc=proc)
    return Server(name, port, proc, gunicorn_worker_pid(proc.pid), env)


def start_baseline(port: int, **extra: str) -> Server:
    env = base_env(GUNICORN_WORKER_CONNECTIONS=WORKER_CONNECTIONS, **extra)
    return start_gunicorn("baseline", "bench.baseline_relay:create_app()", port, env, "/healthz")


# The relay with one durable write per bid (bench/relay_pg.py) keeps its rows here.
RELAY_PG_DB = "reach_bench_relay"
# The PostgreSQL database whose backends count in each system's CPU (`CpuMeter`).
SYSTEM_DATABASES = {"reach-pg": PG_DB, "relay-pg": RELAY_PG_DB}


def start_relay_pg(port: int) -> Server:
    """A fresh `reach_bench_relay` with the relay's one table, and the relay that writes to it."""
    fresh_database(RELAY_PG_DB)
    from bench.relay_pg import SCHEMA

    psql(SCHEMA, db=RELAY_PG_DB)
    env = base_env(
        GUNICORN_WORKER_CONNECTIONS=WORKER_CONNECTIONS,
        RELAY_DATABASE_URL=f"{PG_SERVER}/{RELAY_PG_DB}",
    )
    return start_gunicorn("relay-pg", "bench.relay_pg:create_app()", port, env, "/healthz")


# `reach worker`'s niceness (BENCH_WORKER_NICE=10: the API process wins a contended core first).
WORKER_NICE = int(os.environ.get("BENCH_WORKER_NICE", "0"))
# Reach on PostgreSQL as production runs it, with Redis: the Socket.IO message queue and the
# worker's push wake-ups (BENCH_REDIS_URL=redis://127.0.0.1:6379/13; that database is flushed).
# Without it the worker finds each push on its idle pass, every 0.5 s.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "")


def start_reach(
    name: str, port: int, database_url: str, worker: bool = True, **extra: str
) -> Server:
    """Reach under gunicorn; on PostgreSQL also a separate `reach worker` (PUSH_BACKEND=log)."""
    sqlite = database_url.startswith("sqlite")
    if REDIS_URL and not sqlite:
        redis.Redis.from_url(REDIS_URL).flushdb()
        extra = {"REDIS_URL": REDIS_URL, **extra}
        log(f"  {name}: with Redis ({REDIS_URL}): Socket.IO message queue and push wake-ups")
    env = base_env(
        DATABASE_URL=database_url,
        WORKER_MODE="inline" if sqlite else "separate",
        GUNICORN_WORKER_CONNECTIONS=WORKER_CONNECTIONS,
        REACH_INSTANCE_DIR=str(OUT / "instance"),
        **extra,
    )
    server = start_gunicorn(name, "service:create_app()", port, env, "/readyz")
    if worker and not sqlite:
        nice = ["nice", "-n", str(WORKER_NICE)] if WORKER_NICE else []
        server.extra.append(
            start_process([*nice, REACH, "worker"], env, OUT / "logs" / f"{name}-worker.log")
        )
    return server


# --- databases --------------------------------------------------------------------------------


def psql(sql: str, db: str = "postgres") -> str:
    out = subprocess.run(
        ["psql", f"{PG_SERVER}/{db}", "-v", "ON_ERROR_STOP=1", "-tAc", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def push_delay_ms(url: str = PG_URL) -> dict[str, float]:
    """How long each push waited in the outbox: from the bid's commit to its sending (ms)."""
    row = psql(
        "SELECT count(*), percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY ms), "
        "max(ms) FROM (SELECT extract(epoch FROM pd.sent_at - j.created_at) * 1000 AS ms "
        "FROM push_deliveries pd JOIN push_jobs j ON j.id = pd.job_id "
        "WHERE pd.sent_at IS NOT NULL) AS sent",
        db=url.rsplit("/", 1)[1],
    )
    count, quantiles, longest = row.split("|")
    values = quantiles.strip("{}").split(",") if int(count) else ["0"] * 3
    p50, p90, p99 = (float(v) for v in values)
    return {
        "pushes": int(count),
        "p50": round(p50, 1),
        "p90": round(p90, 1),
        "p99": round(p99, 1),
        "max": round(float(longest or 0), 1),
    }


def fresh_database(name: str) -> None:
    """Drop (its connections first) and recreate one of the benchmarks' own databases."""
    psql(
        "select pg_terminate_backend(pid) from pg_stat_activity "
        f"where datname = '{name}' and pid <> pg_backend_pid()"
    )
    psql(f"drop database if exists {name}")
    psql(f"create database {name}")


def fresh_postgres() -> str:
    """Drop and recreate `reach_bench` (ours alone), migrate it, return its URL."""
    fresh_database(PG_DB)
    migrate(PG_URL)
    _vacuum_stand_in.start_if_needed()
    return PG_URL


# How often the stand-in vacuums when the server runs without autovacuum (docs/operations.md
# recommends autovacuum_naptime = 15s for a busy deployment).
VACUUM_SECONDS = float(os.environ.get("BENCH_VACUUM_SECONDS", "15"))
# Whether each of its vacuums also analyses the tables (BENCH_VACUUM_ANALYZE=0: vacuum only).
VACUUM_ANALYZE = os.environ.get("BENCH_VACUUM_ANALYZE", "1") != "0"


class VacuumStandIn:
    """Production PostgreSQL runs autovacuum; a server without it (this kind of shared machine
    turns it off) lets the push outbox's dead rows pile up for the whole run, so the worker's
    claim (and PostgreSQL's CPU per bid) grows with every bid measured. In that case this thread
    does what autovacuum does with Reach's settings for those tables (migration 0007,
    docs/operations.md): every VACUUM_SECONDS it vacuums and analyses `push_jobs` and
    `push_deliveries`, throttled as autovacuum is, over one connection of its own (a backend
    of `reach_bench`, so its CPU is counted as PostgreSQL's)."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None

    def start_if_needed(self) -> None:
        if self._thread is not None or VACUUM_SECONDS <= 0:
            return
        if psql("show autovacuum") == "on":
            return
        log(
            f"  this PostgreSQL runs without autovacuum: vacuuming the push outbox of {PG_DB} "
            f"every {VACUUM_SECONDS:.0f} s instead (BENCH_VACUUM_SECONDS=0: never)"
        )
        self._thread = threading.Thread(target=self._run, name="vacuum-stand-in", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psycopg

        conn: Any = None
        while True:
            time.sleep(VACUUM_SECONDS)
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(PG_URL, autocommit=True)
                    # Throttled as autovacuum is (its defaults), not flat out as VACUUM is.
                    conn.execute("SET vacuum_cost_delay = '2ms'")
                    conn.execute("SET vacuum_cost_limit = 200")
                began = time.monotonic()
                options = "(ANALYZE) " if VACUUM_ANALYZE else ""
                conn.execute(f"VACUUM {options}push_jobs, push_deliveries")
                # Logged, so a step's latency can be set against the vacuums that fell in it.
                log(f"  (vacuumed the push outbox in {time.monotonic() - began:.2f} s)")
            except psycopg.Error:
                conn = None  # the database was dropped and made again: connect next time


_vacuum_stand_in = VacuumStandIn()


def fresh_sqlite(name: str = "bench") -> str:
    path = OUT / "sqlite" / f"{name}.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    migrate(url)
    return url


def migrate(url: str, revision: str = "heads") -> None:
    env = base_env(DATABASE_URL=url, REACH_INSTANCE_DIR=str(OUT / "instance"))
    done = subprocess.run(
        [REACH, "db", "upgrade", "--revision", revision],
        env=env,
        capture_output=True,
        text=True,
        cwd=SRC,
    )
    if done.returncode != 0:
        raise RuntimeError(f"reach db upgrade failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


# --- seeding ----------------------------------------------------------------------------------


@dataclass
class Couple:
    a_id: str
    b_id: str
    a_token: str
    b_token: str

    def to_json(self) -> dict[str, str]:
        return self.__dict__.copy()


def seed_couples(database_url: str, count: int, devices: bool = True) -> list[Couple]:
    """Insert `count` paired couples straight into the database (argon2 once, not per user),
    one active device per partner, and mint access tokens with the service's own issuer."""
    os.environ.setdefault("REACH_INSTANCE_DIR", str(OUT / "instance"))
    from service import create_app
    from service.config import Settings
    from service.extensions import db
    from service.models import AuthSession, Device, RefreshToken, User
    from service.models import Couple as CoupleRow
    from service.security.passwords import hash_password

    settings = Settings(
        DATABASE_URL=database_url,
        SECRET_KEY=SECRET,
        WORKER_MODE="separate",
        LOG_LEVEL="WARNING",
        ACCESS_TOKEN_SECONDS=6 * 3600,
    )
    app = create_app(settings)
    issuer = app.extensions["reach.tokens"]
    pw = hash_password(PASSWORD)
    now = datetime.now(UTC)
    out: list[Couple] = []
    tag = uuid.uuid4().hex[:8]
    with app.app_context(), db.scope() as session:
        for i in range(count):
            a = User(
                id=uuid.uuid4(),
                email=f"a{i}-{tag}@bench.example",
                password_hash=pw,
                display_name=f"A{i}",
                timezone="UTC",
                created_at=now,
            )
            b = User(
                id=uuid.uuid4(),
                email=f"b{i}-{tag}@bench.example",
                password_hash=pw,
                display_name=f"B{i}",
                timezone="UTC",
                created_at=now,
            )
            session.add_all([a, b])
            session.flush()
            c = CoupleRow(
                id=uuid.uuid4(), partner_a_id=a.id, partner_b_id=b.id, paired_at=now, last_cursor=0
            )
            session.add(c)
            session.flush()
            a.couple_id = b.couple_id = c.id
            sa = AuthSession(id=uuid.uuid4(), user_id=a.id, created_at=now)
            sb = AuthSession(id=uuid.uuid4(), user_id=b.id, created_at=now)
            session.add_all([sa, sb])
            session.flush()
            # Each session holds a refresh token, as a sign-in's does: a socket's session is
            # live while it can refresh (`members.usable_session`).
            session.add_all(
                RefreshToken(
                    token_hash=uuid.uuid4().hex + uuid.uuid4().hex,
                    session_id=signed_in.id,
                    issued_at=now,
                    expires_at=now + timedelta(days=30),
                )
                for signed_in in (sa, sb)
            )
            if devices:
                for u in (a, b):
                    session.add(
                        Device(
                            id=uuid.uuid4(),
                            user_id=u.id,
                            platform="android",
                            push_token=f"tok-{u.id}",
                            created_at=now,
                            updated_at=now,
                        )
                    )
            out.append(
                Couple(
                    str(a.id),
                    str(b.id),
                    issuer.access_token(a.id, sa.id, now),
                    issuer.access_token(b.id, sb.id, now),
                )
            )
            if i % 500 == 499:
                session.flush()
    app.extensions["reach.db"].engine.dispose()
    return out


def baseline_couples(count: int) -> list[Couple]:
    """The bare relay has no database: a token is the user's id, partners are 2k and 2k+1."""
    return [
        Couple(f"u{2 * i}", f"u{2 * i + 1}", f"u{2 * i}", f"u{2 * i + 1}") for i in range(count)
    ]


# --- statistics and output --------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def spread(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None]
    return (min(vals), max(vals)) if vals else (None, None)


def machine_info() -> dict[str, Any]:
    from importlib import metadata

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    pkgs = {}
    for name in (
        "flask",
        "flask-socketio",
        "python-socketio",
        "python-engineio",
        "gevent",
        "gunicorn",
        "simple-websocket",
        "sqlalchemy",
        "psycopg",
        "firebase-admin",
        "requests",
        "urllib3",
        "marshmallow",
        "flask-smorest",
        "flask-limiter",
        "psutil",
        "py-spy",
        "uvloop",
    ):
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pkgs[name] = None
    pg = None
    with contextlib.suppress(Exception):
        pg = psql("show server_version")
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "postgresql": pg,
        "packages": pkgs,
        "loadavg_at_start": os.getloadavg(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "reach_source": SRC_NOTE,
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """bench/out/<name>.json, the latest run (what `bench.report` reads), and a copy under
    bench/out/runs/ named by its time, so that the next run of the same script (with Redis and
    without, say) does not take it away."""
    runs = OUT / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": machine_info(), **payload}
    text = json.dumps(payload, indent=2, default=str)
    path = OUT / f"{name}.json"
    path.write_text(text)
    kept = runs / f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    kept.write_text(text)
    log(f"wrote {path.relative_to(ROOT)} (and {kept.relative_to(ROOT)})")
    return path


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
        return str(v)

    body = [[fmt(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)
    ]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    rows_txt = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in body
    ]
    return "\n".join([line, sep, *rows_txt])


def fmt_when() -> str:
    return (datetime.now(UTC) + timedelta(0)).strftime("%Y-%m-%d %H:%M UTC")


# --- CPU accounting ---------------------------------------------------------------------------


def _proc_stat() -> tuple[float, float, float]:
    """(busy, total, stolen) jiffies of the whole machine, from /proc/stat. Busy includes the
    stolen time: jiffies the hypervisor ran another guest while this one had work to run."""
    fields_ = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields_[3] + fields_[4]
    total = sum(fields_[:8])
    return total - idle, total, fields_[7]


class CpuMeter:
    """CPU seconds used by named processes (and their children), PostgreSQL backends of our
    database, and the whole machine, between start() and stop()."""

    def __init__(self, pids: dict[str, list[int]], pg_db: str | None = PG_DB) -> None:
        self.pids = pids
        self.pg_db = pg_db
        self._t0: dict[str, float] = {}
        self._m0 = (0.0, 0.0, 0.0)
        self._w0 = 0.0

    def _sample(self) -> dict[str, float]:
        import psutil

        out: dict[str, float] = {}
        for name, pids in self.pids.items():
            total = 0.0
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    t = psutil.Process(pid).cpu_times()
                    total += t.user + t.system
            out[name] = total
        if self.pg_db:
            total = 0.0
            for p in psutil.process_iter(["name", "cmdline"]):
                with contextlib.suppress(psutil.Error):
                    cmd = " ".join(p.info["cmdline"] or [])
                    if cmd.startswith("postgres:") and f" {self.pg_db} " in cmd:
                        t = p.cpu_times()
                        total += t.user + t.system
            out["postgres"] = total
        return out

    def start(self) -> None:
        self._t0 = self._sample()
        self._m0 = _proc_stat()
        self._w0 = time.monotonic()

    def stop(self) -> dict[str, float]:
        """Cores used on average by each, plus `machine` (all cores busy, stolen time included),
        `steal` (cores the hypervisor gave other guests while this one had work: the shared
        host's noise) and `other` (the rest: other processes, the kernel's own work)."""
        t1 = self._sample()
        busy1, total1, stolen1 = _proc_stat()
        wall = max(1e-6, time.monotonic() - self._w0)
        ncpu = os.cpu_count() or 1
        out = {k: round(max(0.0, t1.get(k, 0.0) - v) / wall, 3) for k, v in self._t0.items()}
        elapsed = max(1.0, total1 - self._m0[1])
        machine = (busy1 - self._m0[0]) / elapsed * ncpu
        steal = (stolen1 - self._m0[2]) / elapsed * ncpu
        ours = sum(out.values())
        out["machine"] = round(machine, 3)
        out["steal"] = round(steal, 3)
        # PostgreSQL backends that serve another database are counted in `other` (noise).
        out["other"] = round(max(0.0, machine - steal - ours), 3)
        return out


def schedstat(pid: int) -> tuple[int, int]:
    """Nanoseconds a process's threads have run, and sat runnable but off a core, so far
    (/proc/PID/task/*/schedstat; threads that ended meanwhile are not counted)."""
    ran = waited = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields_ = (task / "schedstat").read_text().split()
                ran, waited = ran + int(fields_[0]), waited + int(fields_[1])
    return ran, waited


class RunQueueMeter:
    """How long a process's threads sat runnable but off the CPU (the scheduler's run-queue
    delay, /proc/PID/task/*/schedstat), between start() and stop(): in total, and the worst
    window of `period` seconds. A request that waits for a core shows here and nowhere in the
    process's own profile or in PostgreSQL's statement times."""

    def __init__(self, pid: int, period: float = 0.1) -> None:
        self.pid, self.period = pid, period
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first = self._last = 0
        self._worst = 0
        self._worst_at = self._started = 0.0

    def _delay_ns(self) -> int:
        return schedstat(self.pid)[1]

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            now = self._delay_ns()
            if now - self._last > self._worst:
                self._worst, self._worst_at = now - self._last, time.time()
            self._last = now

    def start(self) -> None:
        self._first = self._last = self._delay_ns()
        self._worst, self._worst_at = 0, 0.0
        self._stop.clear()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="runqueue-meter", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        """`ms_per_s`: run-queue delay per second of wall time (all threads); `worst_ms`: the
        most in one window of `period`; `worst_at`: when that window ended (unix time)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        wall = max(1e-6, time.monotonic() - self._started)
        return {
            "ms_per_s": round((self._delay_ns() - self._first) / 1e6 / wall, 2),
            "worst_ms": round(self._worst / 1e6, 1),
            "worst_at": round(self._worst_at, 2),
        }


def wait_quiet(threshold: float = 0.6, window: float = 2.0, max_wait: float = 30.0) -> float:
    """The machine is shared: before a measurement, wait (bounded) until the CPU used by
    everything on it stays under `threshold` cores for `window` seconds (our own servers idle).
    Returns the last busy figure (cores), recorded with the measurement."""
    deadline = time.monotonic() + max_wait
    busy = 0.0
    while True:
        b0, t0, _ = _proc_stat()
        time.sleep(window)
        b1, t1, _ = _proc_stat()
        busy = (b1 - b0) / max(1.0, t1 - t0) * (os.cpu_count() or 1)
        if busy < threshold or time.monotonic() > deadline:
            break
    if busy >= threshold:
        log(
            f"  machine still busy ({busy:.2f} cores used by others) after {max_wait:.0f} s: "
            "measuring anyway (noted)"
        )
    return round(busy, 2)
