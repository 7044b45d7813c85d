"""The `reach` command: migrations, and the demo that runs the embedded service end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from service import migrate
from tests.support.commands import lines_until, reach, reach_refuses


def test_help_lists_the_commands() -> None:
    out = reach("--help")
    for command in ("db", "serve", "worker", "demo"):
        assert re.search(rf"^\s+{command}\b", out, re.MULTILINE), out


def test_help_lists_reachs_commands_and_options_only(tmp_path: Path) -> None:
    """`reach --help` listed flask-smorest's `openapi`, flask-limiter's `limiter` and Flask's
    -A/--app, -e/--env-file and --debug, none of which Reach uses; and to list the commands it
    built the app, so a setting it cannot run with showed a traceback above the help."""
    env = {
        **os.environ,
        "REACH_INSTANCE_DIR": str(tmp_path),
        "DATABASE_URL": "mysql://reach:hunter2-pw@db.example/reach",
    }
    result = subprocess.run(
        [sys.executable, "-m", "service.entry", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", result.stderr
    listed = re.findall(r"^  (\S+)", result.stdout.split("Commands:")[1], re.MULTILINE)
    assert sorted(listed) == sorted(
        [
            "create-operator",
            "db",
            "demo",
            "disable-operator",
            "enable-operator",
            "clear-rate-limits",
            "routes",
            "serve",
            "set-operator-password",
            "shell",
            "worker",
        ]
    )
    options = result.stdout.split("Options:")[1].split("Commands:")[0]
    assert re.findall(r"^\s+(-\S+)", options, re.MULTILINE) == ["--help"], options
    said = reach_refuses("openapi", "print", env={**env, "DATABASE_URL": ""}, exit_code=2)
    assert "No such command 'openapi'" in said, said
    said = reach_refuses("limiter", "--help", env={**env, "DATABASE_URL": ""})
    assert "reach clear-rate-limits" in said, said  # audited, unlike flask-limiter's
    said = reach_refuses("--app", "wsgi", "db", "current", env=env, exit_code=2)
    assert "No such option '--app'" in said, said


def test_flask_development_server_is_not_offered(tmp_path: Path) -> None:
    """`reach run` would start werkzeug's server: no gevent, no worker, no limits on sockets."""
    assert not re.search(r"^\s+run\b", reach("--help"), re.MULTILINE)
    env = {**os.environ, "REACH_INSTANCE_DIR": str(tmp_path)}
    said = reach_refuses("run", env=env)
    assert "reach serve" in said, said
    for command in ("shell", "routes"):
        assert "Usage" in reach(command, "--help")


def test_db_upgrade_migrates_an_empty_sqlite_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    out = reach("db", "upgrade", env={"DATABASE_URL": url, "REACH_INSTANCE_DIR": str(tmp_path)})
    assert "database is up to date" in out
    with sqlite3.connect(tmp_path / "fresh.sqlite3") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"users", "couples", "couple_events", "bids", "push_jobs"} <= tables


def test_logs_are_one_json_object_per_line_with_the_documented_keys(tmp_path: Path) -> None:
    """docs/operations.md, "Logs": what a log shipper parses."""
    url = f"sqlite:///{tmp_path / 'logged.sqlite3'}"
    result = subprocess.run(
        [sys.executable, "-m", "service.entry", "db", "upgrade"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DATABASE_URL": url, "REACH_INSTANCE_DIR": str(tmp_path)},
        check=True,
    )
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert lines, result.stderr
    for line in lines:
        assert list(line)[:4] == ["ts", "level", "logger", "msg"], line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["ts"]), line


def test_demo_tells_the_story_of_one_bid(tmp_path: Path) -> None:
    """Run from a production shell too: its DATABASE_URL and WORKER_MODE=separate (no worker
    in the demo's process, so its push never went out) are left to production."""
    production = {
        "DATABASE_URL": "postgresql://reach:hunter2-pw@127.0.0.1:1/reach",
        "WORKER_MODE": "separate",
        "REACH_INSTANCE_DIR": str(tmp_path),
    }
    out = reach("demo", env=production, timeout=120)
    lines = out.splitlines()
    steps = [
        "starting the embedded service",
        "are paired with invite code",
        "both phones are connected",
        "reaches for Ben: comfort bid",
        "socket: bid.created",
        "push     android device: visible {'type': 'bid.created'",
        "opened it (status seen)",
        "turned toward the bid: outcome toward",
        "sees Ben turned toward her after",
        "done",
    ]
    for step in steps:
        assert any(step in line for line in lines), (step, out)
    received = next(line for line in lines if "received it" in line)
    assert float(re.search(r"received it ([\d.]+) ms", received).group(1)) < 1000  # type: ignore[union-attr]
    # The lock screen never shows Ana's note, and the log no name: neither is in the push.
    printed = next(line for line in lines if "push " in line)
    assert "Rough day" not in printed and "Ana" not in printed


def test_serve_opens_no_gunicorn_control_socket(tmp_path: Path) -> None:
    """gunicorn's default control socket is one path per user (`~/.gunicorn/gunicorn.ctl`):
    two servers of a host would share it. `reach serve` opens none."""
    import requests

    from tests.support.served import reach_serve

    home = tmp_path / "home"
    home.mkdir()
    with reach_serve(tmp_path / "instance", HOME=str(home), XDG_RUNTIME_DIR="") as url:
        assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
        assert not (home / ".gunicorn").exists()


def test_the_embedded_default_serves_concurrent_writers(tmp_path: Path) -> None:
    """gunicorn + gevent on SQLite: twenty bids at once all succeed (no lock-up)."""
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from tests.support.served import reach_serve

    with reach_serve(tmp_path) as url:
        base = f"{url}/api/v1"

        def register(name: str) -> dict[str, str]:
            body = {
                "email": f"{name}-{uuid.uuid4().hex[:6]}@example.test",
                "password": "correct horse battery",
                "display_name": name,
                "timezone": "UTC",
            }
            token = requests.post(f"{base}/auth/register", json=body, timeout=10).json()
            return {"Authorization": f"Bearer {token['access_token']}"}

        ana, ben = register("Ana"), register("Ben")
        code = requests.post(f"{base}/couple/invites", headers=ana, timeout=10).json()["code"]
        requests.post(f"{base}/couple/join", headers=ben, json={"code": code}, timeout=10)

        def send(index: int) -> int:
            response = requests.post(
                f"{base}/bids",
                headers=ana if index % 2 else ben,
                timeout=20,
                json={"client_id": str(uuid.uuid4()), "kind": "connect"},
            )
            return response.status_code

        with ThreadPoolExecutor(max_workers=20) as pool:
            assert list(pool.map(send, range(20))) == [201] * 20


def test_a_worker_whose_lease_is_too_short_for_a_send_does_not_start(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'worker.sqlite3'}",
        "REACH_INSTANCE_DIR": str(tmp_path),
        "WORKER_MODE": "separate",
        "PUSH_LEASE_SECONDS": "30",
    }
    started = subprocess.run(
        [sys.executable, "-m", "service.entry", "worker"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert started.returncode != 0
    assert "Traceback" not in started.stderr, started.stderr
    assert "PUSH_LEASE_SECONDS=30 is too short for PUSH_TIMEOUT_SECONDS=10" in started.stderr
    assert "Set PUSH_LEASE_SECONDS to 45 or more" in started.stderr


def test_a_worker_without_redis_says_what_phones_miss(tmp_path: Path) -> None:
    """A separate worker with no message queue cannot reach sockets: it says so as it starts."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'worker.sqlite3'}",
        "REACH_INSTANCE_DIR": str(tmp_path),
        "WORKER_MODE": "separate",
        "LOG_FORMAT": "json",
    }
    env.pop("REDIS_URL", None)
    reach("db", "upgrade", env=env)
    worker = subprocess.Popen(
        [sys.executable, "-m", "service.entry", "worker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert worker.stdout is not None
        lines = []
        for line in worker.stdout:
            lines.append(line)
            if "running (SIGTERM stops it" in line:
                break
        assert any("worker without REDIS_URL" in line for line in lines), lines
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)


LONG_SECRET = "cli-test-secret-key-0123456789abcdef"
MISSING_CREDENTIALS = {"PUSH_BACKEND": "fcm", "FIREBASE_CREDENTIALS": "/nonexistent/firebase.json"}


@pytest.mark.parametrize(
    ("args", "settings", "says"),
    [
        (["db", "upgrade"], {"PUSH_BATCH": "32 jobs"}, "PUSH_BATCH must be a whole number"),
        (["db", "upgrade"], {"WORKER_MODE": "inlin"}, "WORKER_MODE is one of inline, separate"),
        (["db", "upgrade"], {"LOG_FORMAT": "xml"}, "LOG_FORMAT is one of json, text"),
        (
            ["db", "upgrade"],
            {"ACCESS_TOKEN_SECONDS": "-60"},
            "ACCESS_TOKEN_SECONDS is 1 or more (seconds), not -60",
        ),
        (
            ["db", "upgrade"],
            {"DATABASE_URL": "mysql://reach:hunter2-pw@db.example/reach"},
            "DATABASE_URL names 'mysql', which Reach does not run on: postgresql://",
        ),
        (
            ["db", "upgrade"],
            {"DATABASE_URL": "postgresql://reach:hunter2-pw@127.0.0.1:1/reach"},
            "cannot use the database at postgresql+psycopg://reach:***@127.0.0.1:1/reach",
        ),
        (
            ["db", "upgrade"],
            {"REDIS_URL": "redis://:hunter2-pw@redis.internal:6379x/0"},
            "REDIS_URL is not a Redis URL (Port could not be cast to integer value as '6379x')",
        ),
        (
            ["db", "upgrade"],
            {"REDIS_URL": "redis://:hunter2-pw@redis.internal:6379/reach"},
            "REDIS_URL names the database 'reach', which is not a number: redis://host:6379/0",
        ),
        (
            ["worker"],
            {"WORKER_MODE": "separate", **MISSING_CREDENTIALS},
            "FIREBASE_CREDENTIALS points at /nonexistent/firebase.json, which is not a file",
        ),
        (
            ["serve", "--port", "0"],
            MISSING_CREDENTIALS,
            "FIREBASE_CREDENTIALS points at /nonexistent/firebase.json, which is not a file",
        ),
        (
            ["db", "upgrade"],
            {"PROMETHEUS_MULTIPROC_DIR": "/nonexistent/reach-metrics"},
            "PROMETHEUS_MULTIPROC_DIR is /nonexistent/reach-metrics, which is not a directory",
        ),
        (
            ["worker"],
            {"WORKER_MODE": "separate", "PROMETHEUS_MULTIPROC_DIR": "/nonexistent/reach-metrics"},
            "PROMETHEUS_MULTIPROC_DIR is /nonexistent/reach-metrics, which is not a directory",
        ),
        (
            ["db", "downgrade", "--revision", "0099"],
            {},
            "Can't locate revision identified by '0099': give heads, base, or a revision",
        ),
        (
            ["create-operator", "ops@example.test", "--password", "a long operator password"],
            {},
            "has no Reach tables (no such table: operators): run `reach db upgrade`",
        ),
    ],
)
def test_an_operators_mistake_is_told_in_one_line_without_a_traceback(
    tmp_path: Path, args: list[str], settings: dict[str, str], says: str
) -> None:
    """A setting the service cannot run with, a database it cannot reach or that was never
    migrated: the command says what is wrong and what to set, and never shows a password."""
    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL",)}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'never-migrated.sqlite3'}",
            "REACH_INSTANCE_DIR": str(tmp_path),
            "SECRET_KEY": LONG_SECRET,
            **settings,
        }
    )
    said = reach_refuses(*args, env=env)
    assert says in said
    assert "hunter2-pw" not in said


def test_serve_with_several_processes_needs_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes share socket events and rate limits through Redis only: `reach serve
    --workers 2` without REDIS_URL is refused before gunicorn starts, not served half-deaf."""
    from click.testing import CliRunner

    from service import cli
    from service.cli import serve

    started: list[list[str]] = []
    monkeypatch.setattr(serve.os, "execv", lambda path, command: started.append(command))
    monkeypatch.delenv("REDIS_URL", raising=False)
    env = {"DATABASE_URL": "postgresql://reach@127.0.0.1:1/reach", "SECRET_KEY": LONG_SECRET}
    result = CliRunner().invoke(cli.main, ["serve", "--workers", "2"], env=env)
    assert result.exit_code == 2, result.output
    assert "--workers 2 or more needs REDIS_URL" in result.output
    assert started == []


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"PUSH_BATCH": "32 jobs"}, "PUSH_BATCH must be a whole number, not '32 jobs'"),
        ({"PUSH_LEASE_SECONDS": "30"}, "Set PUSH_LEASE_SECONDS to 45 or more"),
        (
            {"GUNICORN_WORKER_CONNECTIONS": "-1"},
            "GUNICORN_WORKER_CONNECTIONS is 1 or more (connections), not -1",
        ),
        ({"GUNICORN_GRACEFUL_TIMEOUT": "-5"}, "GUNICORN_GRACEFUL_TIMEOUT is 0 or more"),
        (
            {"PROMETHEUS_MULTIPROC_DIR": "/nonexistent/reach-metrics"},
            "PROMETHEUS_MULTIPROC_DIR is /nonexistent/reach-metrics, which is not a directory",
        ),
        (  # the worker inline (SQLite) sends the pushes
            MISSING_CREDENTIALS,
            "FIREBASE_CREDENTIALS points at /nonexistent/firebase.json, which is not a file",
        ),
        (
            {"WORKER_MODE": "inline", "PUSH_BACKEND": "fmc"},
            "PUSH_BACKEND='fmc' is not known: set it to one of log, fcm",
        ),
    ],
)
def test_the_images_gunicorn_refuses_a_wrong_setting_without_a_traceback(
    tmp_path: Path, settings: dict[str, str], says: str
) -> None:
    """The image's command (`gunicorn -c deploy/gunicorn.conf.py wsgi:app`) with a setting
    the service cannot run with: it says what to set and stops, once."""
    root = Path(__file__).resolve().parents[1]
    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL",)}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'image.sqlite3'}",
            "REACH_INSTANCE_DIR": str(tmp_path),
            "BIND": "127.0.0.1:0",
            **settings,
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=root,
        check=False,
    )
    said = result.stdout + result.stderr
    assert result.returncode != 0, said
    assert says in said, said
    assert "Traceback" not in said, said


def test_db_downgrade_says_the_revision_the_database_is_at(tmp_path: Path) -> None:
    """`--revision -1` steps back one migration: the database is then at the revision before
    the newest, not at "-1"."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'back.sqlite3'}"}
    reach("db", "upgrade", env=env)
    out = reach("db", "downgrade", "--revision", "-1", env=env)
    with sqlite3.connect(tmp_path / "back.sqlite3") as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert (
        revision
        == ScriptDirectory.from_config(migrate.alembic_config()).get_revision("heads").down_revision
    )
    assert f"database is at {revision}" in out, out
    out = reach("db", "downgrade", "--revision", "base", env=env)
    assert "database is at base" in out, out


def test_db_upgrade_to_an_older_revision_says_where_the_database_is(tmp_path: Path) -> None:
    """`--revision 0014` stops there: the database is not up to date, it is at 0014."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'partly.sqlite3'}"}
    out = reach("db", "upgrade", "--revision", "0014", env=env)
    assert "database is up to date" not in out, out
    assert "database is at 0014_checkin_client_id" in out, out
    assert "database is up to date" in reach("db", "upgrade", env=env)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "99999"], "Invalid value for '--port': 99999 is not in the range"),
        (["--port", "-1"], "Invalid value for '--port': -1 is not in the range"),
        (["--workers", "0"], "Invalid value for '--workers': 0 is not in the range"),
    ],
)
def test_serve_refuses_a_port_or_process_count_out_of_range(
    monkeypatch: pytest.MonkeyPatch, args: list[str], says: str
) -> None:
    """`reach serve --port 99999` showed gunicorn's traceback, and `--workers 0` started a
    server with no process to answer: each is refused with what the option takes."""
    from click.testing import CliRunner

    from service import cli
    from service.cli import serve

    started: list[list[str]] = []
    monkeypatch.setattr(serve.os, "execv", lambda path, command: started.append(command))
    env = {"DATABASE_URL": "postgresql://reach@127.0.0.1:1/reach", "SECRET_KEY": LONG_SECRET}
    result = CliRunner().invoke(cli.main, ["serve", *args], env=env)
    assert result.exit_code == 2, result.output
    assert says in result.output, result.output
    assert started == []


@pytest.mark.parametrize("idle", ["0", "-1"])
def test_a_worker_that_would_never_rest_does_not_start(tmp_path: Path, idle: str) -> None:
    """`reach worker --idle 0` passed again at once after every idle pass, querying the
    database as fast as it could for nothing: it is refused with what `--idle` takes."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'worker.sqlite3'}",
        "REACH_INSTANCE_DIR": str(tmp_path),
        "WORKER_MODE": "separate",
    }
    reach("db", "upgrade", env=env)
    started = subprocess.run(
        [sys.executable, "-m", "service.entry", "worker", "--idle", idle],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert started.returncode == 2, started.stdout + started.stderr
    assert "Invalid value for '--idle'" in started.stderr
    assert "Traceback" not in started.stderr, started.stderr


def test_db_upgrade_never_steps_back_and_downgrade_never_goes_on(tmp_path: Path) -> None:
    """`reach db upgrade --revision -2` (or an older revision) did nothing and exited 0, and
    `downgrade` to a newer revision was told to give "heads, base, or a revision": each is
    refused, naming the command that goes that way, and the database stays where it is."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ways.sqlite3'}",
        "REACH_INSTANCE_DIR": str(tmp_path),
    }
    reach("db", "upgrade", "--revision", "0014", env=env)
    said = reach_refuses("db", "upgrade", "--revision", "0012", env=env)
    assert "0012_devices_sessions is below 0014_checkin_client_id, where the database is" in said
    assert "`reach db downgrade --revision 0012_devices_sessions` steps back" in said
    said = reach_refuses("db", "upgrade", "--revision", "-2", env=env)
    assert "`reach db downgrade --revision 0012_devices_sessions` steps back" in said
    said = reach_refuses("db", "downgrade", "--revision", "0016", env=env)
    assert (
        "0016_bid_facts_filled is not below 0014_checkin_client_id, where the database is" in said
    )
    assert "`reach db upgrade --revision 0016_bid_facts_filled` goes on" in said
    assert "0014_checkin_client_id (older than" in reach("db", "current", env=env)


def test_a_dotenv_file_where_reach_runs_sets_nothing(tmp_path: Path) -> None:
    """Settings come from the environment alone (docs/operations.md): a `.env` left in the
    directory an operator runs `reach` from, or any above it, is not read (Flask's CLI reads
    one with python-dotenv installed, and would take its DATABASE_URL)."""
    stray = tmp_path / "stray.sqlite3"
    (tmp_path / ".env").write_text(f"DATABASE_URL=sqlite:///{stray}\n")
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env |= {"REACH_INSTANCE_DIR": str(tmp_path), "PYTHONPATH": str(Path.cwd())}
    result = subprocess.run(
        [sys.executable, "-m", "service.entry", "db", "upgrade"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not stray.exists(), "the stray .env's DATABASE_URL was used"


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"]])
def test_a_process_whose_redis_does_not_answer_says_what_to_check(
    tmp_path: Path, command: list[str]
) -> None:
    """With REDIS_URL set and Redis away, a starting API process or worker said nothing until
    flask-limiter's `Rate limit storage unreachable` at the first limited request, naming no
    setting and no address. It says so once as it starts: the setting, where it points (never
    its password) and what to check."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'redis-away.sqlite3'}",
        "REACH_INSTANCE_DIR": str(tmp_path),
        "WORKER_MODE": "separate",
        "REDIS_URL": "redis://:hunter2-pw@127.0.0.1:1/0",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
    }
    reach("db", "upgrade", env=env)
    process = subprocess.Popen(
        [sys.executable, "-m", "service.entry", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        lines = lines_until(process, '"setting": "REDIS_URL"', 30)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    told = [json.loads(line) for line in lines if '"setting": "REDIS_URL"' in line]
    assert len(told) == 1, lines
    (line,) = told
    assert line["level"] == "warning" and line["redis"] == "127.0.0.1:1", line
    assert "REDIS_URL" in line["msg"] and "127.0.0.1:1" in line["msg"], line
    assert "is Redis running" in line["msg"], line
    assert not any("hunter2-pw" in said for said in lines), lines
