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

from service.cli import main
from service.config import NOT_FROM_ENVIRONMENT, Settings, check_choices, from_environment

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
    return re.findall(r"^\| `(reach [^`]+)` \|", section, re.M)


@pytest.mark.parametrize("command", readme_commands())
def test_the_readmes_commands_and_their_options_exist(command: str) -> None:
    words = command.split()[1:]
    path = [word for word in words if re.fullmatch(r"[a-z][a-z-]*", word)]
    flags = re.findall(r"--[a-z-]+", command)
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, f"{command}: {result.output}"
    assert f"Usage: main {' '.join(path)} " in result.output, result.output
    assert [flag for flag in flags if flag not in result.output] == []
