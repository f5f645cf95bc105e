"""Helpers the guard and the Resources share."""

import json
import logging
import posixpath
from datetime import timedelta

from flask import abort, after_this_request, current_app, g, request, session, url_for
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import joinedload
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from config import app, db
from models import (
    USERNAME_RE,
    ApiToken,
    OneTimeToken,
    SecurityEvent,
    User,
    UserSession,
    email_lookup,
    sha256,
    utcnow,
)

events_log = logging.getLogger("security")


def json_body():
    """The request's JSON object, or the house 400/415 (never a 500 on deep nesting)."""
    try:
        refuse_over_long_chunked_body()
        data = request.get_json()
    except UnsupportedMediaType:
        abort(415)
    except BadRequest:
        abort(400, "Request body is not valid JSON.")
    except RecursionError:
        abort(400, "Request body is nested too deeply.")
    if not isinstance(data, dict):
        abort(400, "Request body must be a JSON object.")
    return data


def refuse_over_long_chunked_body():
    """413 for a body over MAX_CONTENT_LENGTH sent without a Content-Length (chunked), as for
    one announced too long: werkzeug stops reading such a body at the limit, without an error,
    so what follows would be judged as cut-off JSON (a 400)."""
    if request.content_length is not None or not request.is_json:
        return
    if len(request.get_data(cache=True)) >= current_app.config["MAX_CONTENT_LENGTH"]:
        if request.input_stream.read(1):  # the raw stream: is there more past the limit?
            abort(413)


def find_login_user(identifier):
    """The user a login names: by username, or by a verified email address."""
    if "@" in identifier:
        return db.session.scalar(
            select(User).where(
                func.lower(User.email) == email_lookup(identifier),
                User.email_verified_at.is_not(None),
            )
        )
    if not USERNAME_RE.fullmatch(identifier):
        return None
    return db.session.scalar(select(User).where(func.lower(User.username) == identifier.lower()))


def log_in(user, remember=False):
    """Start a fresh session for user: the session store issues a new id for it."""
    session.clear()
    session["user_id"] = user.id
    session.permanent = remember


def current_session_id():
    row = getattr(session, "row", None)
    return row.id if row is not None and g.get("token") is None else None


def request_origin():
    """(address, user agent) of the request, as the history records them."""
    return request.remote_addr, request.user_agent.string[:255] or None


def log_event(user, type_, at=None, origin=None):
    """One JSON line in the application log; never a password or a token."""
    ip, user_agent = origin or request_origin()
    events_log.info(
        json.dumps(
            {
                "event": type_,
                "user_id": user.id,
                "at": (at or utcnow()).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "ip": ip,
                "user_agent": user_agent,
            }
        )
    )


def after_response(work):
    """work(origin) in an app context once the response has gone out, so that it cannot make
    this answer slower than the same answer for someone without an account (failed logins,
    lockouts); origin is the request's (address, user agent). Failures are logged only."""
    origin = request_origin()

    def run():
        try:
            with app.app_context():
                work(origin)
        except Exception:
            events_log.exception("work after the response failed")

    @after_this_request
    def on_close(response):
        response.call_on_close(run)
        return response


def record_event_after_response(user, type_):
    """Record an event once the response has gone out (see after_response)."""
    user_id, at = user.id, utcnow()
    log_event(user, type_, at)

    def write(origin):
        ip, user_agent = origin
        db.session.add(
            SecurityEvent(user_id=user_id, type=type_, created_at=at, ip=ip, user_agent=user_agent)
        )
        db.session.commit()

    after_response(write)


def record_event(user, type_, origin=None):
    """Add an entry to the user's security history (committed with the request) and log it."""
    ip, user_agent = origin or request_origin()
    event = SecurityEvent(
        user_id=user.id, type=type_, created_at=utcnow(), ip=ip, user_agent=user_agent
    )
    db.session.add(event)
    log_event(user, type_, event.created_at, (ip, user_agent))


def end_sessions(user, keep=None):
    """Delete the user's sessions (all but `keep`, a session id)."""
    query = delete(UserSession).where(UserSession.user_id == user.id)
    if keep is not None:
        query = query.where(UserSession.id != keep)
    db.session.execute(query)


def end_tokens(user, keep=None):
    """Delete the user's API tokens (all but `keep`, a token id)."""
    query = delete(ApiToken).where(ApiToken.user_id == user.id)
    if keep is not None:
        query = query.where(ApiToken.id != keep)
    db.session.execute(query)


def new_credentials(user):
    """Every session and token minted before now stops working, including any login that was
    already past its password check when this commits (it carries the old version)."""
    user.auth_version += 1


def end_one_time_tokens(user, purpose):
    db.session.execute(
        delete(OneTimeToken).where(OneTimeToken.user_id == user.id, OneTimeToken.purpose == purpose)
    )


def keyset_page(query, id_column, args, endpoint, **url_args):
    """Newest first, `limit` rows before the `before` cursor, and a Link to the next page."""
    query = query.order_by(id_column.desc()).limit(args["limit"] + 1)
    if "before" in args:
        query = query.where(id_column < args["before"])
    return next_page(db.session.scalars(query).all(), args, endpoint, **url_args)


def next_page(rows, args, endpoint, **url_args):
    """rows (fetched with limit + 1) cut to `limit`, and the Link header when there is more."""
    if len(rows) <= args["limit"]:
        return rows, {}
    rows = rows[: args["limit"]]
    next_args = {**url_args, **args, "before": rows[-1].id}
    return rows, {"Link": f'<{relative_url(endpoint, **next_args)}>; rel="next"'}


def relative_url(endpoint, **values):
    """A reference to endpoint relative to this request's URL (`posts?before=5` from /posts,
    `posts/7` from POST /posts): resolved against the URL the client called, as
    `new URL(link, response.url)` does, it lands on the same API behind a dev proxy or a path
    prefix, where an absolute URL built from the Host the API saw would not."""
    path, sep, query = url_for(endpoint, **values).partition("?")
    here = posixpath.dirname(request.script_root + request.path)
    return posixpath.relpath(path, here) + sep + query


def find_api_token(secret):
    """The live token a bearer secret names, or None; last use is written at most once a minute."""
    if not secret or not secret.startswith(ApiToken.PREFIX) or len(secret) > 100:
        return None
    token = db.session.scalar(
        select(ApiToken)
        .options(joinedload(ApiToken.user))
        .where(ApiToken.token_hash == sha256(secret))
    )
    now = utcnow()
    if token is None or not token.is_live(now):
        return None
    if token.last_used_at is None or now - token.last_used_at >= timedelta(minutes=1):
        db.session.execute(  # by id: a token revoked meanwhile is no error
            update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now)
        )
        db.session.commit()
    return token


def caller_row():
    """The caller's User row, for a Resource that changes the user or checks their password
    (g.user is a read-only Caller); 401 if the account was deleted since the session was read."""
    user = db.session.get(User, g.user.id)
    if user is None:
        abort(401)
    return user


def require_admin():
    if not g.user.is_admin:
        abort(403, "Administrators only.")
