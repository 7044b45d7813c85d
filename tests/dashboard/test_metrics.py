"""GET /metrics: request latency, sockets, bids, pushes, and DB gauges; right with N processes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from service import create_app, migrate
from service.dashboard.live import NAMESPACE as OPS
from service.worker.runner import Worker
from tests.dashboard.conftest import OperatorAccount, OpsClient, live_figures
from tests.dashboard.helpers import add_device, send_bid
from tests.support.client import ApiClient
from tests.support.phones import Phone
from tests.support.races import hang_up_while_connecting
from tests.support.server import LiveServer
from tests.support.settings import make_settings
from tests.support.waiting import wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
ROOT = Path(__file__).resolve().parents[2]


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client: ApiClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return samples(response.text)


def test_metrics_count_requests_sockets_bids_and_pushes(
    client: ApiClient, worker: Worker, phone: Any
) -> None:
    before = scrape(client)
    ana, ben = client.couple()
    add_device(client, ben, "ben-metrics-token")
    ben_phone: Phone = phone(ben.access_token)
    send_bid(client, ana)
    ben_phone.wait_for("bid.created")
    during = scrape(client)
    worker.run_once()
    after = scrape(client)

    assert value(after, "reach_database_up") == 1
    latency = "reach_http_request_duration_seconds_count"
    labels = {"endpoint": "/api/v1/bids", "method": "POST", "status": "201"}
    assert value(during, latency, **labels) == value(before, latency, **labels) + 1
    bucket = {**labels, "le": "+Inf"}
    assert value(during, "reach_http_request_duration_seconds_bucket", **bucket) >= 1
    assert (
        value(during, "reach_bids_created_total") == value(before, "reach_bids_created_total") + 1
    )
    assert value(during, "reach_socket_connections", namespace="members") >= 1
    # Gauges read from the database at scrape time.
    assert value(during, "reach_push_backlog") == value(before, "reach_push_backlog") + 1
    assert value(during, "reach_push_oldest_pending_age_seconds") >= 0
    assert value(during, "reach_bids_last_hour") == value(before, "reach_bids_last_hour") + 1
    assert value(after, "reach_push_backlog") == value(before, "reach_push_backlog")
    sent = {"outcome": "sent", "platform": "android"}
    assert value(after, "reach_push_outcomes_total", **sent) == (
        value(before, "reach_push_outcomes_total", **sent) + 1
    )
    assert value(after, "reach_push_attempts_last_hour", outcome="sent") == (
        value(before, "reach_push_attempts_last_hour", outcome="sent") + 1
    )


def documented_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """The metrics table of docs/operations.md: name -> (type, labels)."""
    text = (ROOT / "docs" / "operations.md").read_text()
    table = text.split("### Metrics", 1)[1].split("\n\n", 2)[1]
    found = {}
    for row in table.splitlines()[2:]:
        named, kind = (cell.strip() for cell in row.strip("|").split("|")[:2])
        match = re.fullmatch(r"`(reach_\w+)(?:\{([\w,]+)\})?`", named)
        assert match is not None, f"not a metric: {row}"
        found[match[1]] = (
            kind.split()[0].strip(","),
            frozenset(filter(None, (match[2] or "").split(","))),
        )
    return found


def test_every_metric_the_runbook_names_is_served_as_documented(
    client: ApiClient, worker: Worker, phone: Any
) -> None:
    """Alerts are written from docs/operations.md: each name, type and label set there is what
    /metrics serves, and it serves nothing of Reach's that the table leaves out."""
    ana, ben = client.couple()
    add_device(client, ben, "ben-documented-token")
    ben_phone: Phone = phone(ben.access_token)
    send_bid(client, ana)
    ben_phone.wait_for("bid.created")
    worker.run_once()
    text = client.get("/metrics").text

    families = list(text_string_to_metric_families(text))
    counted = {family.name for family in families if family.type in ("counter", "histogram")}
    served: dict[str, tuple[str, frozenset[str]]] = {}
    for family in families:
        created_of = family.name.endswith("_created") and family.name[: -len("_created")]
        if not family.name.startswith("reach_") or created_of in counted:
            continue  # the creation times prometheus-client adds to counters and histograms
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = {key for sample in family.samples for key in sample.labels} - {"le"}
        served[name] = (family.type, frozenset(labels))
    documented = documented_metrics()
    assert sorted(served) == sorted(documented)
    for name, (kind, labels) in documented.items():
        assert served[name][0] == kind, name
        # A labelled counter nothing has counted yet (no Redis here: pubsub) shows no labels.
        assert served[name][1] in (labels, frozenset()), name
    assert served["reach_push_outcomes_total"][1] == {"outcome", "platform"}
    assert served["reach_socket_connections"][1] == {"namespace"}


def test_every_metric_the_runbook_mentions_is_one_the_table_lists() -> None:
    """Alert expressions and runbook steps name only metrics /metrics serves (the test above)."""
    text = (ROOT / "docs" / "operations.md").read_text()
    series = set()
    for name, (kind, _) in documented_metrics().items():
        series.add(name)
        if kind == "histogram":
            series.update(f"{name}_{part}" for part in ("bucket", "count", "sum"))
    mentioned = set(re.findall(r"\breach_[a-z_]+[a-z]", text))
    named_otherwise = {"reach_affinity", "reach_ops", "reach_route", "reach_topology"}
    assert sorted(mentioned - series - named_otherwise) == []


@pytest.fixture
def multiproc_env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'metrics.sqlite3'}"
    migrate.upgrade(url)
    directory = tmp_path / "prometheus"
    directory.mkdir()
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS", "DATABASE"))}
    return {
        **keep,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": url,
        "SECRET_KEY": "metrics-test-secret-key-0123456789abcdef",
        "WORKER_MODE": "separate",
        "SOCKETIO_ASYNC_MODE": "threading",
        "LOG_LEVEL": "WARNING",
        "REACH_INSTANCE_DIR": str(tmp_path),
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
    }


def child(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.dashboard.metrics_child", *args],
        env=env,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def serve(env: dict[str, str], requests: int, sockets: int) -> subprocess.Popen[str]:
    process = child(env, "serve", str(requests), str(sockets))
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def scrape_from_another_process(env: dict[str, str]) -> tuple[Samples, dict[str, Any]]:
    process = child(env, "scrape")
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    result = json.loads(out.strip().splitlines()[-1])
    return samples(result["metrics"]), result["sockets"]


def test_made_up_http_methods_add_no_series(client: ApiClient) -> None:
    """The method label is the client's to choose: each new one would be a histogram more."""
    for method in ("AAAB", "AAAC", "PROPFIND"):
        assert client.request(method, "/api/v1/nothing-here").status_code in (404, 405)
    found = scrape(client)
    methods = {
        dict(labels)["method"]
        for name, labels in found
        if name == "reach_http_request_duration_seconds_count"
    }
    assert not {"AAAB", "AAAC", "PROPFIND"} & methods
    other = {"endpoint": "<unmatched>", "method": "other", "status": "404"}
    assert value(found, "reach_http_request_duration_seconds_count", **other) >= 3


def test_with_several_processes_any_process_reports_them_all(
    multiproc_env: dict[str, str],
) -> None:
    """Counters add up over processes; live gauges count only processes that still run."""
    first = serve(multiproc_env, requests=3, sockets=2)
    second = serve(multiproc_env, requests=4, sockets=1)
    assert second.stdin is not None
    second.stdin.write("\n")
    second.stdin.flush()
    assert second.wait(timeout=30) == 0  # gone: its requests still count, its sockets not

    found, sockets = scrape_from_another_process(multiproc_env)
    healthz = {"endpoint": "/healthz", "method": "GET", "status": "200"}
    assert value(found, "reach_http_request_duration_seconds_count", **healthz) == 7
    assert value(found, "reach_socket_connections", namespace="members") == 2
    assert sockets == {"members": 2, "scope": "host"}
    assert ("reach_push_backlog", ()) in found

    assert first.stdin is not None
    first.stdin.write("\n")
    first.stdin.flush()
    assert first.wait(timeout=30) == 0
    found, sockets = scrape_from_another_process(multiproc_env)
    assert value(found, "reach_http_request_duration_seconds_count", **healthz) == 7
    assert value(found, "reach_socket_connections", namespace="members") == 0
    assert sockets == {"members": 0, "scope": "host"}


@pytest.mark.parametrize("database", ["away", "never migrated"])
def test_without_its_database_a_process_still_reports_its_own_metrics(
    database: str, tmp_path: Path
) -> None:
    """During a database outage the 503s, sockets and Redis counters are what an operator
    needs: /metrics answers with them, leaves out the gauges read from the database and says
    so in reach_database_up, rather than failing the whole scrape."""
    url = {
        "away": "postgresql://reach@127.0.0.1:1/away",
        "never migrated": f"sqlite:///{tmp_path}/never-migrated.sqlite3",
    }[database]
    server = LiveServer(create_app(make_settings(url))).start()
    try:
        assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
        answer = requests.get(f"{server.url}/metrics", timeout=10)
    finally:
        server.stop()
    assert answer.status_code == 200, answer.text
    found = samples(answer.text)
    healthz = {"endpoint": "/healthz", "method": "GET", "status": "200"}
    assert value(found, "reach_http_request_duration_seconds_count", **healthz) >= 1
    assert found[("reach_database_up", ())] == 0
    assert ("reach_push_backlog", ()) not in found


def exited_processes_gauges(directory: Path, count: int) -> None:
    """The socket gauge files that `count` API processes left when they exited (pids above
    the kernel's pid_max: no process has them)."""
    first = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    key = mmap_key(
        "reach_socket_connections",
        "reach_socket_connections",
        ["namespace"],
        ["members"],
        "Connected Socket.IO clients",
    )
    for pid in range(first, first + count):
        gauge = MmapedDict(str(directory / f"gauge_livesum_{pid}.db"))
        gauge.write_value(key, 1.0, 0.0)
        gauge.close()


def test_processes_scraped_at_once_after_others_exited_all_answer(
    server_with: Callable[..., LiveServer], tmp_path: Path
) -> None:
    """Each scrape drops the files of exited processes; two processes of a host scraped at the
    same moment (two Prometheus servers, an open /ops overview) drop the same ones: neither
    fails because the other was first."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    server = server_with(PROMETHEUS_MULTIPROC_DIR=str(directory))

    def scrape_status(_: int) -> int:
        return requests.get(f"{server.url}/metrics", timeout=30).status_code

    with ThreadPoolExecutor(4) as pool:
        for _ in range(10):
            exited_processes_gauges(directory, 200)
            assert list(pool.map(scrape_status, range(4))) == [200] * 4
    found = samples(requests.get(f"{server.url}/metrics", timeout=30).text)
    assert value(found, "reach_socket_connections", namespace="members") == 0


def test_an_overview_closed_while_connecting_is_not_counted_nor_kept_up_to_date(
    server_with: Callable[..., LiveServer], operator: OperatorAccount
) -> None:
    """An operator's browser that goes away while its /ops socket's session is still being
    looked up (the tab closed, the network dropped) leaves no socket counted in
    reach_socket_connections, and no overview computed every OPS_REFRESH_SECONDS for nobody."""
    server = server_with()
    ops = OpsClient(server.url)
    assert ops.sign_in(operator).status_code == 302
    assert ops.cookie is not None
    before = samples(requests.get(f"{server.url}/metrics", timeout=10).text)
    hang_up_while_connecting(server.app, server.url, OPS, cookies={"reach_ops": ops.cookie})
    after = samples(requests.get(f"{server.url}/metrics", timeout=10).text)
    ops_sockets = ("reach_socket_connections", (("namespace", "ops"),))
    assert after.get(ops_sockets, 0.0) == before.get(ops_sockets, 0.0)
    figures = live_figures(server.app)
    assert (figures.watchers, figures.wait_idle(5)) == (0, True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


UNSHARE = ("unshare", "--pid", "--fork", "--mount-proc")


@contextmanager
def container(env: dict[str, str], port: int) -> Iterator[str]:
    """The image's command in a PID namespace of its own, as a container runs it (its master
    is pid 1, and its worker gets the same pid each time the container starts); its URL. It
    dies at once on leaving, as a container that crashed."""
    command = [*UNSHARE, sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"]
    process = subprocess.Popen(
        [*command, "wsgi:app"],
        env={**env, "BIND": f"127.0.0.1:{port}"},
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{url}/healthz"), timeout=30, what="gunicorn to serve")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_after_a_container_restart_the_sockets_of_the_one_before_are_not_counted(
    multiproc_env: dict[str, str],
) -> None:
    """An emptyDir outlives a container restart (a crash, a failed liveness probe), and the
    new container's processes get the pids of the old one's: the sockets open when it died
    are not counted as the new worker's, which holds none."""
    env = {k: v for k, v in multiproc_env.items() if k != "SOCKETIO_ASYNC_MODE"}
    port = free_port()
    phones: list[Phone] = []
    try:
        with container(env, port) as url:
            client = ApiClient(url)
            ana, ben = client.couple()
            phones = [Phone(url, who.access_token).connect() for who in (ana, ben)]
            found = samples(requests.get(f"{url}/metrics", timeout=10).text)
            assert value(found, "reach_socket_connections", namespace="members") == 2
    finally:
        for held in phones:
            held.client.disconnect()
    with container(env, port) as url:
        found = samples(requests.get(f"{url}/metrics", timeout=10).text)
        assert value(found, "reach_socket_connections", namespace="members") == 0
