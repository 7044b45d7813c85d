"""`reach create-operator EMAIL [--password P]`: operators are made on the command line only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from service import migrate
from service.cli import main
from service.security.passwords import verify_password


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'operators.sqlite3'}"
    migrate.upgrade(url)
    return {
        "DATABASE_URL": url,
        "SECRET_KEY": "cli-test-secret-key-0123456789abcdef",
        "WORKER_MODE": "separate",
    }


def operators(env: dict[str, str]) -> dict[str, str]:
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT email, password_hash FROM operators").fetchall())


def test_the_password_can_be_given_as_an_option(env: dict[str, str]) -> None:
    password = "a long operator password"
    result = CliRunner().invoke(
        main, ["create-operator", "Ops@Example.test", "--password", password], env=env
    )
    assert result.exit_code == 0, result.output
    assert "operator ops@example.test created" in result.output
    stored = operators(env)
    assert list(stored) == ["ops@example.test"]
    assert verify_password(stored["ops@example.test"], password)
    again = CliRunner().invoke(
        main, ["create-operator", "ops@example.test", "--password", password], env=env
    )
    assert again.exit_code == 1
    assert "exists already" in again.output


def test_without_the_option_it_asks_twice_without_echo(env: dict[str, str]) -> None:
    answers = "first try, long\nmismatch, long\nthe real password\nthe real password\n"
    result = CliRunner().invoke(
        main, ["create-operator", "ops2@example.test"], input=answers, env=env
    )
    assert result.exit_code == 0, result.output
    assert "Repeat for confirmation" in result.output
    assert "the real password" not in result.output
    assert verify_password(operators(env)["ops2@example.test"], "the real password")


def test_a_short_password_is_refused(env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        main, ["create-operator", "ops3@example.test", "--password", "short"], env=env
    )
    assert result.exit_code == 1
    assert "at least 12 characters" in result.output
    assert operators(env) == {}


def test_help_lists_create_operator() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert "create-operator" in result.output
