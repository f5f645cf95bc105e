"""The command line: `flask --app server/app.py users promote NAME`, `sessions purge`,
`mail failed` and `mail retry`."""

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import and_, delete, func, or_, select, text
from sqlalchemy.exc import IntegrityError

from admins import leaves_no_admin
from bounds import MAX_ID
from config import db
from database import rows_affected
from mailer import failed_messages, retry_failed
from models import (
    ApiToken,
    OneTimeToken,
    PendingLogin,
    User,
    UserSession,
    WebauthnChallenge,
    utcnow,
)

users_cli = AppGroup("users", help="Manage users.")


def set_role(username: str, role: str) -> None:
    user = db.session.scalar(select(User).where(func.lower(User.username) == username.lower()))
    if user is None:
        raise click.ClickException(f"no user named {username!r}")
    user.role = role
    try:
        db.session.commit()
    except IntegrityError as e:  # the database keeps an active admin (migration 0005)
        db.session.rollback()
        if not leaves_no_admin(e):
            raise
        raise click.ClickException(
            "that would leave no active administrator; promote another user first"
        ) from None
    click.echo(f"{user.username} is now {'an admin' if role == 'admin' else 'a user'}.")


@users_cli.command("promote")
@click.argument("username")
def promote(username: str) -> None:
    """Make USERNAME an admin (how the first admin is made)."""
    set_role(username, "admin")


@users_cli.command("demote")
@click.argument("username")
def demote(username: str) -> None:
    """Make USERNAME an ordinary user again."""
    set_role(username, "user")


sessions_cli = AppGroup("sessions", help="Maintain sessions and tokens.")


@sessions_cli.command("purge")
def purge() -> None:
    """Delete expired sessions, API tokens, link tokens, pending logins and passkey challenges
    (run it from cron)."""
    now, config = utcnow(), current_app.config
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL statement_timeout = 0"))  # big deletes take time
    idle_out = or_(
        and_(
            ~UserSession.remember, UserSession.last_seen_at < now - config["SESSION_IDLE_TIMEOUT"]
        ),
        and_(
            UserSession.remember,
            UserSession.last_seen_at < now - config["SESSION_REMEMBER_LIFETIME"],
        ),
    )
    statements = {
        "sessions": delete(UserSession).where(or_(UserSession.expires_at <= now, idle_out)),
        "API tokens": delete(ApiToken).where(ApiToken.expires_at <= now),
        "link tokens": delete(OneTimeToken).where(OneTimeToken.expires_at <= now),
        "pending logins": delete(PendingLogin).where(PendingLogin.expires_at <= now),
        "passkey challenges": delete(WebauthnChallenge).where(WebauthnChallenge.expires_at <= now),
    }
    counts = {name: rows_affected(db.session, statement) for name, statement in statements.items()}
    db.session.commit()
    click.echo(", ".join(f"{count} expired {name}" for name, count in counts.items()) + " deleted.")


mail_cli = AppGroup("mail", help="See and retry mail that could not be delivered.")


@mail_cli.command("failed")
def mail_failed() -> None:
    """List the messages given up on: id, kind, address, attempts, when, last error."""
    rows = failed_messages()
    for row in rows:
        failed_at = row.failed_at.strftime("%Y-%m-%dT%H:%M:%SZ") if row.failed_at else ""
        click.echo(
            f"{row.id}\t{row.kind}\t{row.to_address}\t{row.attempts}\t{failed_at}\t{row.last_error}"
        )
    if not rows:
        click.echo("No failed mail.")


@mail_cli.command("retry")
@click.argument("ids", nargs=-1, type=click.IntRange(1, MAX_ID))
@click.option("--all", "retry_all", is_flag=True, help="Retry every failed message.")
def mail_retry(ids: tuple[int, ...], retry_all: bool) -> None:
    """Queue failed messages IDS (or --all) again, with their attempts reset."""
    if bool(ids) == retry_all:
        raise click.UsageError("Give the ids of failed messages, or --all.")
    retried = retry_failed(None if retry_all else list(ids))
    click.echo(f"{len(retried)} message(s) queued again.")
    if missing := sorted(set(ids) - set(retried)):
        raise click.ClickException(f"no failed message with id {', '.join(map(str, missing))}")


COMMANDS = (users_cli, sessions_cli, mail_cli)
