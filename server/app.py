"""The route table (every URL the API has, and what is special about each), the login guard in
front of every Resource, and the hooks every request passes through."""

import os
from typing import cast

from flask import abort, g, request, session
from flask_restful import Resource

from commands import COMMANDS
from config import api, app
from environment import Environment
from headers import add_security_headers
from inputs import bearer_token
from mailer import start_sender
from mfa import has_second_factor, require_factor_for_role
from models import Caller
from origins import allow_cors, refuse_cross_site_writes
from resources.account import (
    EmailVerification,
    EmailVerificationConfirm,
    Me,
    MyPassword,
    PasswordReset,
    PasswordResetConfirm,
    SecurityEvents,
)
from resources.admin import AdminUserItem, AdminUserList
from resources.auth import (
    CheckSession,
    Login,
    LoginSecondFactor,
    Logout,
    Reauthenticate,
    Signup,
)
from resources.devices import SessionItem, SessionList, TokenItem, TokenList
from resources.health import Health, Ready
from resources.mfa import MfaStatus, RecoveryCodes, Totp, TotpConfirm
from resources.openapi import OpenApiDocument
from resources.passkeys import (
    LoginPasskey,
    LoginPasskeyOptions,
    LoginSecondFactorPasskey,
    LoginSecondFactorPasskeyOptions,
    PasskeyItem,
    PasskeyList,
    PasskeyRegistrationOptions,
    ReauthenticatePasskey,
    ReauthenticatePasskeyOptions,
)
from resources.posts import PostItem, PostList
from routing import ID, Route, add_routes, route_of
from sessions import ServerSession, ServerSessionInterface, raise_failure
from stepup import require_recent
from throttles import throttle_caller
from tokens import find_api_token

POST = frozenset({"POST"})


def probe(url: str, resource: type[Resource], endpoint: str) -> Route:
    """A probe, polled by load balancers: public, never throttled, and reading no credentials,
    so that it answers whatever the database does."""
    return Route(url, resource, endpoint, frozenset({"GET"}), throttled=False, credentials=False)


ROUTES = (
    Route("/signup", Signup, "signup", public=POST),
    Route("/login", Login, "login", public=POST),
    Route("/logout", Logout, "logout"),
    Route("/check_session", CheckSession, "check_session"),
    Route("/posts", PostList, "posts"),
    Route(f"/posts/<{ID}:post_id>", PostItem, "post"),
    Route("/sessions", SessionList, "sessions"),
    Route(f"/sessions/<{ID}:session_id>", SessionItem, "session"),
    Route("/login/mfa", LoginSecondFactor, "login_mfa", public=POST),
    Route(
        "/login/mfa/passkey/options",
        LoginSecondFactorPasskeyOptions,
        "login_mfa_passkey_options",
        public=POST,
    ),
    Route("/login/mfa/passkey", LoginSecondFactorPasskey, "login_mfa_passkey", public=POST),
    Route("/login/passkey/options", LoginPasskeyOptions, "login_passkey_options", public=POST),
    Route("/login/passkey", LoginPasskey, "login_passkey", public=POST),
    Route("/reauthenticate", Reauthenticate, "reauthenticate"),
    Route(
        "/reauthenticate/passkey/options",
        ReauthenticatePasskeyOptions,
        "reauthenticate_passkey_options",
    ),
    Route("/reauthenticate/passkey", ReauthenticatePasskey, "reauthenticate_passkey"),
    Route("/tokens", TokenList, "tokens", public=POST, recent=POST),
    Route(f"/tokens/<{ID}:token_id>", TokenItem, "token"),
    Route("/me", Me, "me", sensitive=frozenset({"PATCH", "DELETE"})),
    Route("/me/password", MyPassword, "my_password", sensitive=frozenset({"PUT"})),
    Route("/me/email-verification", EmailVerification, "email_verification"),
    Route("/me/security-events", SecurityEvents, "security_events"),
    Route("/me/mfa", MfaStatus, "mfa"),
    Route("/me/mfa/totp", Totp, "totp", recent=frozenset({"POST", "DELETE"})),
    Route("/me/mfa/totp/confirm", TotpConfirm, "totp_confirm", recent=POST),
    Route("/me/mfa/recovery-codes", RecoveryCodes, "recovery_codes", recent=POST),
    Route(
        "/me/passkeys/options",
        PasskeyRegistrationOptions,
        "passkey_registration_options",
        recent=POST,
    ),
    Route("/me/passkeys", PasskeyList, "passkeys", recent=POST),
    Route(
        f"/me/passkeys/<{ID}:passkey_id>",
        PasskeyItem,
        "passkey",
        recent=frozenset({"DELETE"}),
    ),
    Route("/password-reset", PasswordReset, "password_reset", public=POST),
    Route("/password-reset/confirm", PasswordResetConfirm, "password_reset_confirm", public=POST),
    Route(
        "/email-verification/confirm",
        EmailVerificationConfirm,
        "email_verification_confirm",
        public=POST,
    ),
    Route("/admin/users", AdminUserList, "admin_users", admin=True),
    Route(
        f"/admin/users/<{ID}:user_id>",
        AdminUserItem,
        "admin_user",
        admin=True,
        recent=frozenset({"PATCH"}),
    ),
    probe("/healthz", Health, "healthz"),
    probe("/readyz", Ready, "readyz"),
    probe("/openapi.json", OpenApiDocument, "openapi"),
)

UNLISTED = Route("", Resource, "")  # what an endpoint missing from ROUTES is: protected, throttled

app.session_interface = ServerSessionInterface()
app.before_request(throttle_caller)
app.before_request(raise_failure)
app.before_request(refuse_cross_site_writes)
allow_cors(app)
app.after_request(add_security_headers)


@app.before_request
def require_login() -> None:
    """Put the caller in g.user (a Caller) from the session or a bearer token; refuse every
    non-public method to anonymous callers, and admin routes to everyone else. A bad bearer
    token is a 401 even where a cookie would do: it never falls back to the cookie."""
    if app.config["MAIL_BACKGROUND_SENDER"]:
        start_sender(app)
    g.user, g.token = None, None
    if request.endpoint is None or request.method == "OPTIONS":
        return  # unknown URLs and wrong methods get their own 404 and 405; preflights pass
    route = route_of(request.endpoint) or UNLISTED  # not in the table: no exceptions made
    if not route.credentials:
        return  # probes answer whatever credentials come along, without a database lookup
    if "Authorization" in request.headers:
        g.token = find_api_token(bearer_token())
        if g.token is None:
            abort(401, "Invalid or expired token.")
        g.user = Caller.of(g.token.user)
    elif session.get("user_id"):
        row = cast(ServerSession, session).row  # a session with a user was read from its row
        assert row is not None
        g.user = row.user if not row.user.disabled else None  # read in the session's query
    method = "GET" if request.method == "HEAD" else request.method
    if g.user is None and method not in route.public:
        abort(401)
    if g.user is None:
        return  # a public method, called anonymously
    if route.admin:
        if not g.user.is_admin:
            abort(403, "Administrators only.")
        require_factor_for_role(g.user)
    if method in route.recent or (method in route.sensitive and has_second_factor(g.user.id)):
        require_recent()


for command in COMMANDS:
    app.cli.add_command(command)
add_routes(app, api, ROUTES)

if __name__ == "__main__":
    app.run(port=Environment(os.environ).integer("PORT", 5555))
