"""The operator tools: create, disable and enable /ops accounts, set a new password."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click
from flask.cli import with_appcontext

from service.cli import main

T = TypeVar("T")


def _carried_out(action: Callable[..., T], *args: str) -> T:
    """`action(session, *args)` on the app's session, in the audit log as taken on this command
    line; a refusal is one line, not a traceback."""
    from service.domain.errors import ReachError
    from service.extensions import db as database
    from service.services import ops_audit

    try:
        return action(database.session, *args, by=ops_audit.CommandLine.here())
    except ReachError as exc:
        raise click.ClickException(exc.detail) from exc


@main.command("create-operator")
@click.argument("email")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="The operator's password (asked for, twice, when not given)",
)
@with_appcontext
def create_operator(email: str, password: str) -> None:
    """Create an operator account for the /ops dashboard (not a member account)."""
    from service.services import ops_accounts

    operator = _carried_out(ops_accounts.create_operator, email, password)
    click.echo(f"operator {operator.email} created; sign in at /ops/login")


def _sessions_ended(count: int) -> str:
    noun = "session" if count == 1 else "sessions"
    return f"{count} signed-in {noun} ended (an open dashboard closes at its next refresh)"


@main.command("disable-operator")
@click.argument("email")
@with_appcontext
def disable_operator(email: str) -> None:
    """Disable an operator account (someone who leaves): /ops refuses its sign-in and ends
    every session of it now."""
    from service.services import ops_accounts

    ended = _carried_out(ops_accounts.disable_operator, email)
    email = ops_accounts.normalize_email(email)
    click.echo(f"operator {email} disabled; {_sessions_ended(ended)}")


@main.command("enable-operator")
@click.argument("email")
@with_appcontext
def enable_operator(email: str) -> None:
    """Let a disabled operator account sign in to /ops again."""
    from service.services import ops_accounts

    _carried_out(ops_accounts.enable_operator, email)
    click.echo(f"operator {ops_accounts.normalize_email(email)} enabled; it signs in anew")


@main.command("set-operator-password")
@click.argument("email")
@click.option(
    "--password",
    prompt="New password",
    hide_input=True,
    confirmation_prompt=True,
    help="The new password (asked for, twice, when not given)",
)
@with_appcontext
def set_operator_password(email: str, password: str) -> None:
    """Give an operator account a new password; every session signed in with the old one ends."""
    from service.services import ops_accounts

    ended = _carried_out(ops_accounts.set_password, email, password)
    email = ops_accounts.normalize_email(email)
    click.echo(f"operator {email} has a new password; {_sessions_ended(ended)}")
