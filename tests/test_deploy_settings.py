"""What an operator reads and deploys names only real settings: every setting is documented
(README or docs/operations.md) with its default, every documented variable exists, and the
deploy files set real settings to values the service accepts, and run real `reach` commands."""

from __future__ import annotations

import re
import shlex
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from flask import request

from service import create_app
from service.cli import main
from service.config import (
    NOT_FROM_ENVIRONMENT,
    Settings,
    SettingsError,
    check_choices,
    from_environment,
)
from tests.support.settings import make_settings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {f.name: f for f in fields(Settings) if f.name not in NOT_FROM_ENVIRONMENT}
# Read by gunicorn's config (deploy/gunicorn.conf.py) and by service/config.py at import.
OUTSIDE_SETTINGS = {"BIND", "REACH_INSTANCE_DIR"}


def configuration_rows(doc: str) -> list[list[str]]:
    """The rows of the tables in `doc`'s "## Configuration" section."""
    text = (ROOT / doc).read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| `")
    ]


def named(cell: str) -> list[str]:
    return re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)


DOCUMENTED = {
    doc: [(named(row[0]), row) for row in configuration_rows(doc)]
    for doc in ("README.md", "docs/operations.md")
}


def test_every_setting_is_documented_and_every_documented_one_exists() -> None:
    documented = {name for rows in DOCUMENTED.values() for names, _ in rows for name in names}
    assert sorted(set(SETTINGS) - documented) == []
    assert sorted(documented - set(SETTINGS) - OUTSIDE_SETTINGS) == []


def shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.mark.parametrize("doc", sorted(DOCUMENTED))
def test_the_documented_defaults_are_the_settings_defaults(doc: str) -> None:
    """Where a row gives one `value` per variable, each is the setting's default (an empty
    default is told in words: unset, none, generated, chosen)."""
    wrong = []
    for names, row in DOCUMENTED[doc]:
        values = re.findall(r"`([^`]*)`", row[1])
        if len(values) != len(names):
            continue
        for name, value in zip(names, values, strict=True):
            default = SETTINGS[name].default if name in SETTINGS else MISSING
            # An empty default is told in words.
            if default not in (MISSING, "", ()) and value != shown(default):
                wrong.append(f"{name}: {value!r}, the default is {default!r}")
    assert wrong == []


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "deploy/compose.yaml").read_text()))


def manifests() -> list[dict[str, Any]]:
    found = []
    for path in sorted((ROOT / "deploy/k8s").glob("*.yaml")):
        found.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return found


def compose_value(raw: str) -> str:
    """`${VAR:-default}` as compose fills it in without deploy/.env, `${VAR:?...}` as set."""
    raw = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(raw))
    return re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "set-in-env-file", raw)


def deployed_environments() -> dict[str, dict[str, str]]:
    found = {"compose": {k: compose_value(v) for k, v in compose()["x-reach-environment"].items()}}
    for doc in manifests():
        if doc["kind"] in ("ConfigMap", "Secret") and doc["metadata"]["name"] != "reach-firebase":
            found[f"k8s {doc['kind']} {doc['metadata']['name']}"] = {
                k: str(v) for k, v in (doc.get("data") or doc.get("stringData") or {}).items()
            }
    return found


@pytest.mark.parametrize("where", sorted(deployed_environments()))
def test_the_deploy_files_set_real_settings_to_values_the_service_takes(where: str) -> None:
    environment = deployed_environments()[where]
    assert sorted(set(environment) - set(SETTINGS) - OUTSIDE_SETTINGS) == []
    settings = from_environment(environment)  # numbers are numbers
    check_choices(settings)  # WORKER_MODE, LOG_FORMAT, LOG_LEVEL ... name one of their choices
    if "REDIS_URL" in environment:
        assert settings.REDIS_URL.startswith("redis://")


def test_env_example_sets_only_what_compose_reads() -> None:
    example = (ROOT / "deploy/env.example").read_text()
    keys = re.findall(r"^([A-Z_][A-Z0-9_]*)=", example, re.M)
    compose_text = (ROOT / "deploy/compose.yaml").read_text()
    unread = [key for key in keys if not re.search(rf"\$\{{{key}(:[-?][^}}]*)?\}}", compose_text)]
    assert unread == []


def commands() -> list[list[str]]:
    """Every `reach ...` command the compose file and the manifests run."""
    found = [
        list(service["command"])
        for service in compose()["services"].values()
        if isinstance(service.get("command"), list) and service["command"][0] == "reach"
    ]
    for doc in manifests():
        template = doc.get("spec", {}).get("template", {}).get("spec", {})
        found.extend(
            list(container["command"])
            for container in template.get("containers", [])
            if container.get("command", [""])[0] == "reach"
        )
    return found


def test_the_deploy_files_run_real_reach_commands() -> None:
    ran = commands()
    assert ["reach", "worker"] in ran and ["reach", "db", "upgrade"] in ran
    for command in ran:
        result = CliRunner().invoke(main, [*command[1:], "--help"])
        assert result.exit_code == 0, f"{shlex.join(command)}: {result.output}"
        assert f"Usage: main {' '.join(command[1:])}" in result.output, result.output


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\| (`reach .*?) \|", section, re.M)
    return [command for cell in first_cells for command in re.findall(r"`(reach [^`]+)`", cell)]


@pytest.mark.parametrize("command", readme_commands())
def test_the_readmes_commands_and_their_options_exist(command: str) -> None:
    words = command.split()[1:]
    path = [word for word in words if re.fullmatch(r"[a-z][a-z-]*", word)]
    flags = re.findall(r"--[a-z-]+", command)
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, f"{command}: {result.output}"
    assert f"Usage: main {' '.join(path)} " in result.output, result.output
    assert [flag for flag in flags if flag not in result.output] == []


NGINX_CONFIGS = ("deploy/nginx/reach.conf", "deploy/nginx/reach.local.conf.template")


@pytest.mark.parametrize("conf", NGINX_CONFIGS)
def test_nginx_passes_the_scheme_a_terminator_in_front_was_asked_over(conf: str) -> None:
    """A TLS terminator in front of nginx (docs/operations.md) sets X-Forwarded-Proto: https;
    nginx adds its own scheme to it, as it adds the address to X-Forwarded-For, so that with
    TRUSTED_PROXIES=2 the service sees https (overwritten with nginx's http, the /ops page's
    socket was refused as another origin), and with 1 a client cannot claim https."""
    text = (ROOT / conf).read_text()
    chain = re.search(r"map \$http_x_forwarded_proto \$(\w+) \{([^}]*)\}", text)
    assert chain is not None, "no map that chains X-Forwarded-Proto"
    assert re.search(r'""\s+\$scheme;', chain[2]) and re.search(
        r'default\s+"\$http_x_forwarded_proto, \$scheme";', chain[2]
    )
    protos = re.findall(r"proxy_set_header X-Forwarded-Proto (\S+);", text)
    assert protos and set(protos) == {f"${chain[1]};".rstrip(";")}
    assert text.count("X-Forwarded-For $proxy_add_x_forwarded_for") == len(protos)


def test_behind_a_terminator_and_nginx_the_service_sees_the_client_and_https() -> None:
    """What nginx now sends for a request a terminator took over HTTPS from 203.0.113.7."""
    app = create_app(make_settings("sqlite://", TRUSTED_PROXIES=2))
    headers = {
        "Host": "reach.example.com",
        "Origin": "https://reach.example.com",
        "X-Forwarded-For": "203.0.113.7, 10.0.0.2",
        "X-Forwarded-Proto": "https, http",
        "X-Forwarded-Host": "reach.example.com",
    }
    seen = {}

    @app.get("/test-proxy-view")
    def _view() -> str:
        seen.update(address=request.remote_addr, scheme=request.scheme)
        return "ok"

    client = app.test_client()
    assert client.get("/test-proxy-view", headers=headers).status_code == 200
    assert seen == {"address": "203.0.113.7", "scheme": "https"}
    opened = client.get("/socket.io/?EIO=4&transport=polling", headers=headers)
    assert opened.status_code == 200, opened.get_data(as_text=True)


def test_compose_lets_deploy_env_set_the_proxies_in_front() -> None:
    assert compose()["x-reach-environment"]["TRUSTED_PROXIES"] == "${TRUSTED_PROXIES:-1}"


def seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)s?", str(value))
    assert match is not None, value
    return int(match[1])


def test_a_stopping_worker_is_given_time_to_finish_its_pass() -> None:
    """On SIGTERM a worker finishes its pass, which sends while its push lease has room and so
    can last up to PUSH_LEASE_SECONDS while FCM answers slowly; killed before, what it sent is
    not recorded, and another worker sends it again once the lease has run out."""
    lease = SETTINGS["PUSH_LEASE_SECONDS"].default
    worker = next(d for d in manifests() if d.get("metadata", {}).get("name") == "reach-worker")
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > lease
    assert seconds(compose()["services"]["worker"]["stop_grace_period"]) > lease


@pytest.mark.parametrize("bind", ["9102", "0.0.0.0:", "host:port", "0.0.0.0:70000"])
def test_a_worker_metrics_bind_that_is_not_host_and_port_stops_the_service(bind: str) -> None:
    with pytest.raises(SettingsError, match="WORKER_METRICS_BIND is HOST:PORT"):
        create_app(make_settings("sqlite://", WORKER_METRICS_BIND=bind))


def directives(block: str) -> dict[str, list[str]]:
    """The directives of one nginx block (its nested blocks left out): name -> arguments."""
    flat = re.sub(r"\{[^{}]*\}", ";", re.sub(r"#[^\n]*", "", block))
    found: dict[str, list[str]] = {}
    for statement in flat.split(";"):
        words = statement.split()
        if words:
            found[words[0]] = words[1:]
    return found


@pytest.mark.parametrize("conf", NGINX_CONFIGS)
def test_nginx_compresses_json_and_the_ops_pages_but_never_the_sockets(conf: str) -> None:
    """A page of 1000 sync events went out as ~50 KB of plain JSON (hundreds on a phone's
    mobile data for a long gap): nginx gzips JSON, problems and the /ops pages' scripts and
    styles above 1 KB, for requests a terminator in front passed on too; never /socket.io/."""
    text = (ROOT / conf).read_text()
    shared = text.split("# BEGIN shared locations")[1].split("# END shared locations")[0]
    server = directives(shared)
    assert server["gzip"] == ["on"]
    assert {
        "application/json",
        "application/problem+json",
        "application/javascript",
        "text/javascript",
        "text/css",
    } <= set(server["gzip_types"])
    assert 256 <= int(server["gzip_min_length"][0]) <= 4096
    assert server["gzip_proxied"] == ["any"]
    assert server["gzip_vary"] == ["on"]
    sockets = re.search(r"location /socket\.io/ \{([^}]*)\}", shared)
    assert sockets is not None
    assert directives(sockets[1])["gzip"] == ["off"]
    others = re.findall(r"location [^{]+\{([^}]*)\}", shared)
    assert [body for body in others if "gzip" in directives(body)] == [sockets[1]]


def test_every_reach_command_is_in_the_readme() -> None:
    """The README's table is where an operator looks for a command: `reach db current` and
    `reach db history` were missing from it."""
    import click

    offered = []
    for name, command in main.commands.items():
        ours = command.callback is not None and command.callback.__module__.startswith("service.")
        if command.hidden or not ours:  # Flask's shell and routes, the extensions' groups
            continue
        if isinstance(command, click.Group):
            offered.extend(f"{name} {sub}" for sub in command.commands)
        else:
            offered.append(name)
    listed = {
        " ".join(word for word in command.split()[1:] if re.fullmatch(r"[a-z][a-z-]*", word))
        for command in readme_commands()
    }
    assert sorted(set(offered) - listed) == []
