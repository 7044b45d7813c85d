"""`reach clear-rate-limits`: a member or an address held at a rate limit is let through again."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import click
from flask import current_app
from flask.cli import with_appcontext

from service.cli import main
from service.config import Settings, redis_address

if TYPE_CHECKING:  # imported when run: service.metrics must not be made before the settings
    from service.security.rate_counters import RedisRateCounters


def _address(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IP address") from None
    return value.strip()


@main.command("clear-rate-limits")
@click.option("--email", help="Every limit counted for the account (and sign-ins) of this email")
@click.option("--address", callback=_address, help="Every limit counted for this IP address")
@with_appcontext
def clear_rate_limits(email: str | None, address: str | None) -> None:
    """Clear the rate limits of a member's account or of an address (in the audit log)."""
    import redis

    from service.extensions import db as database
    from service.extensions import limiter
    from service.security.rate_counters import RedisRateCounters

    if not email and not address:
        raise click.UsageError("give --email or --address (or both)")
    settings: Settings = current_app.extensions["reach.settings"]
    counters = limiter.storage
    if not isinstance(counters, RedisRateCounters):
        raise click.ClickException(
            "without REDIS_URL, rate limits are counted inside the serving process, which no "
            "command reaches: restarting it clears them"
        )
    try:
        _clear(counters, email, address)
    except redis.RedisError as exc:
        database.roll_back()
        raise click.ClickException(
            f"cannot reach Redis at {redis_address(settings.REDIS_URL)} ({type(exc).__name__}): "
            f"is it running and reachable from here, and is REDIS_URL right? Nothing was cleared"
        ) from None


def _clear(counters: RedisRateCounters, email: str | None, address: str | None) -> None:
    from service.extensions import account_limit_key, address_key
    from service.extensions import db as database
    from service.extensions.limit_keys import email_limit_key
    from service.services import accounts, ops_audit, ops_rate_limits

    session, by = database.session, ops_audit.CommandLine.here()
    if email:
        typed = accounts.normalize_email(email)[:254]
        user_id = ops_rate_limits.member_of(session, email)
        # Member and operator sign-ins count under the email's keyed digest, never the address.
        keys = [email_limit_key("email", typed), email_limit_key("operator", typed)]
        if user_id is not None:
            keys.append(account_limit_key(user_id))
        target = ops_audit.Target("user", str(user_id) if user_id else "-")
        cleared = ops_rate_limits.clear(session, counters, target, keys, by=by)
        whose = f"account {user_id}" if user_id else "that email (no member account has it)"
        click.echo(f"rate limits of {whose} cleared ({_counters(cleared)})")
    if address:
        counted = address_key(address)
        keys = [f"{prefix}:{counted}" for prefix in ("ip", "email-less", "operator-less")]
        target = ops_audit.Target("address", counted)
        cleared = ops_rate_limits.clear(session, counters, target, keys, by=by)
        click.echo(f"rate limits of address {counted} cleared ({_counters(cleared)})")


def _counters(count: int) -> str:
    return f"{count} counter{'' if count == 1 else 's'}"


@main.command(
    "limiter", hidden=True, context_settings={"ignore_unknown_options": True}, add_help_option=False
)
@click.argument("ignored", nargs=-1, type=click.UNPROCESSED)
def limiter_command(ignored: tuple[str, ...]) -> None:
    """flask-limiter's commands, which Reach does not offer."""
    raise click.ClickException(
        "`reach limiter` (flask-limiter's) would change rate limits with no entry in the audit "
        "log: run `reach clear-rate-limits --email EMAIL` or `--address ADDRESS`"
    )
