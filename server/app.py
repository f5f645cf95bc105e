"""The login guard, the command line, and the route table: every URL the API has."""

import click
from flask import abort, g, request, session
from flask.cli import AppGroup
from sqlalchemy import and_, delete, func, or_, select, text
from sqlalchemy.exc import IntegrityError

from common import find_api_token
from config import api, app, db, env_int
from mailer import failed_messages, retry_failed, start_sender
from models import MAX_ID, ApiToken, Caller, OneTimeToken, User, UserSession, utcnow
from resources.account import (
    EmailVerification,
    EmailVerificationConfirm,
    Me,
    MyPassword,
    PasswordReset,
    PasswordResetConfirm,
    SecurityEvents,
)
from resources.admin import AdminUserItem, AdminUserList, leaves_no_admin
from resources.auth import CheckSession, Login, Logout, Signup
from resources.devices import SessionItem, SessionList, TokenItem, TokenList
from resources.health import Health, Ready
from resources.openapi import OpenApiDocument
from resources.posts import PostItem, PostList
from security import (
    add_security_headers,
    bearer_token,
    refuse_cross_site_writes,
    throttle_caller,
)
from sessions import SESSIONLESS_PATHS, ServerSessionInterface, raise_failure

app.session_interface = ServerSessionInterface()
app.before_request(throttle_caller)
app.before_request(raise_failure)
app.before_request(refuse_cross_site_writes)
app.after_request(add_security_headers)

# (endpoint, method) pairs anyone may call; everything else needs a session or a bearer token.
PUBLIC_ROUTES = {
    ("signup", "POST"),
    ("login", "POST"),
    ("tokens", "POST"),
    ("password_reset", "POST"),
    ("password_reset_confirm", "POST"),
    ("email_verification_confirm", "POST"),
    ("healthz", "GET"),
    ("readyz", "GET"),
    ("openapi", "GET"),
}
app.extensions["public_routes"] = frozenset(PUBLIC_ROUTES)  # what GET /openapi.json reads


@app.before_request
def require_login():
    """Put the caller in g.user (a Caller) from the session or a bearer token; refuse every
    non-public route to anonymous callers. A bad bearer token is a 401 even where a cookie
    would do: it never falls back to the cookie."""
    if app.config["MAIL_BACKGROUND_SENDER"]:
        start_sender(app)
    g.user, g.token = None, None
    if request.endpoint is None or request.method == "OPTIONS":
        return  # unknown URLs and wrong methods get their own 404 and 405; preflights pass
    if request.path in SESSIONLESS_PATHS:
        return  # probes answer whatever credentials come along, without a database lookup
    if "Authorization" in request.headers:
        g.token = find_api_token(bearer_token())
        if g.token is None:
            abort(401, "Invalid or expired token.")
        g.user = Caller.of(g.token.user)
    elif session.get("user_id"):
        caller = session.row.user  # read with the session, in the same query
        g.user = caller if not caller.disabled else None
    method = "GET" if request.method == "HEAD" else request.method
    if g.user is None and (request.endpoint, method) not in PUBLIC_ROUTES:
        abort(401)


# --- command line: flask --app server/app.py users promote USERNAME ---

users_cli = AppGroup("users", help="Manage users.")


def set_role(username, role):
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
def promote(username):
    """Make USERNAME an admin (how the first admin is made)."""
    set_role(username, "admin")


@users_cli.command("demote")
@click.argument("username")
def demote(username):
    """Make USERNAME an ordinary user again."""
    set_role(username, "user")


app.cli.add_command(users_cli)

sessions_cli = AppGroup("sessions", help="Maintain sessions and tokens.")


@sessions_cli.command("purge")
def purge():
    """Delete expired sessions, API tokens and link tokens (run it from cron)."""
    now, config = utcnow(), app.config
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
    counts = {
        "sessions": delete(UserSession).where(or_(UserSession.expires_at <= now, idle_out)),
        "API tokens": delete(ApiToken).where(ApiToken.expires_at <= now),
        "link tokens": delete(OneTimeToken).where(OneTimeToken.expires_at <= now),
    }
    for name, statement in counts.items():
        counts[name] = db.session.execute(statement).rowcount
    db.session.commit()
    click.echo(", ".join(f"{count} expired {name}" for name, count in counts.items()) + " deleted.")


app.cli.add_command(sessions_cli)

mail_cli = AppGroup("mail", help="See and retry mail that could not be delivered.")


@mail_cli.command("failed")
def mail_failed():
    """List the messages given up on: id, kind, address, attempts, when, last error."""
    rows = failed_messages()
    for row in rows:
        failed_at = row.failed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        click.echo(
            f"{row.id}\t{row.kind}\t{row.to_address}\t{row.attempts}\t{failed_at}\t{row.last_error}"
        )
    if not rows:
        click.echo("No failed mail.")


@mail_cli.command("retry")
@click.argument("ids", nargs=-1, type=click.IntRange(1, MAX_ID))
@click.option("--all", "retry_all", is_flag=True, help="Retry every failed message.")
def mail_retry(ids, retry_all):
    """Queue failed messages IDS (or --all) again, with their attempts reset."""
    if bool(ids) == retry_all:
        raise click.UsageError("Give the ids of failed messages, or --all.")
    retried = retry_failed(None if retry_all else list(ids))
    click.echo(f"{len(retried)} message(s) queued again.")
    if missing := sorted(set(ids) - set(retried)):
        raise click.ClickException(f"no failed message with id {', '.join(map(str, missing))}")


app.cli.add_command(mail_cli)

# --- the route table ---

ID = f"int(min=1, max={MAX_ID})"

api.add_resource(Signup, "/signup", endpoint="signup")
api.add_resource(Login, "/login", endpoint="login")
api.add_resource(Logout, "/logout", endpoint="logout")
api.add_resource(CheckSession, "/check_session", endpoint="check_session")
api.add_resource(PostList, "/posts", endpoint="posts")
api.add_resource(PostItem, f"/posts/<{ID}:post_id>", endpoint="post")
api.add_resource(SessionList, "/sessions", endpoint="sessions")
api.add_resource(SessionItem, f"/sessions/<{ID}:session_id>", endpoint="session")
api.add_resource(TokenList, "/tokens", endpoint="tokens")
api.add_resource(TokenItem, f"/tokens/<{ID}:token_id>", endpoint="token")
api.add_resource(Me, "/me", endpoint="me")
api.add_resource(MyPassword, "/me/password", endpoint="my_password")
api.add_resource(EmailVerification, "/me/email-verification", endpoint="email_verification")
api.add_resource(SecurityEvents, "/me/security-events", endpoint="security_events")
api.add_resource(PasswordReset, "/password-reset", endpoint="password_reset")
api.add_resource(PasswordResetConfirm, "/password-reset/confirm", endpoint="password_reset_confirm")
api.add_resource(
    EmailVerificationConfirm, "/email-verification/confirm", endpoint="email_verification_confirm"
)
api.add_resource(AdminUserList, "/admin/users", endpoint="admin_users")
api.add_resource(AdminUserItem, f"/admin/users/<{ID}:user_id>", endpoint="admin_user")
api.add_resource(Health, "/healthz", endpoint="healthz")
api.add_resource(Ready, "/readyz", endpoint="readyz")
api.add_resource(OpenApiDocument, "/openapi.json", endpoint="openapi")

if __name__ == "__main__":
    app.run(port=env_int("PORT", 5555))
