"""The security history: each event is a row the user can read (GET /me/security-events) and a
JSON line in the application log. Never a password or a token in either."""

import json
import logging
from collections.abc import Callable
from datetime import datetime

from flask import Response, after_this_request, request

from bounds import USER_AGENT_MAX_LENGTH
from config import app, db
from models import Caller, SecurityEvent, User, utcnow

events_log = logging.getLogger("security")

Origin = tuple[str | None, str | None]  # (address, user agent) of a request


def request_origin() -> Origin:
    """(address, user agent) of the request, as the history records them."""
    return request.remote_addr, request.user_agent.string[:USER_AGENT_MAX_LENGTH] or None


def log_event(
    user: User | Caller, type_: str, at: datetime | None = None, origin: Origin | None = None
) -> None:
    """One JSON line in the application log."""
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


def record_event(user: User | Caller, type_: str, origin: Origin | None = None) -> None:
    """Add an entry to the user's security history (committed with the request) and log it."""
    ip, user_agent = origin or request_origin()
    event = SecurityEvent(
        user_id=user.id, type=type_, created_at=utcnow(), ip=ip, user_agent=user_agent
    )
    db.session.add(event)
    log_event(user, type_, event.created_at, (ip, user_agent))


def after_response(work: Callable[[Origin], None]) -> None:
    """work(origin) in an app context once the response has gone out, so that it cannot make
    this answer slower than the same answer for someone without an account (failed logins,
    lockouts); origin is the request's (address, user agent). Failures are logged only."""
    origin = request_origin()

    def run() -> None:
        try:
            with app.app_context():
                work(origin)
        except Exception:
            events_log.exception("work after the response failed")

    @after_this_request
    def on_close(response: Response) -> Response:
        response.call_on_close(run)
        return response


def record_event_after_response(user: User, type_: str) -> None:
    """Record an event once the response has gone out (see after_response)."""
    user_id, at = user.id, utcnow()
    log_event(user, type_, at)

    def write(origin: Origin) -> None:
        ip, user_agent = origin
        db.session.add(
            SecurityEvent(user_id=user_id, type=type_, created_at=at, ip=ip, user_agent=user_agent)
        )
        db.session.commit()

    after_response(write)
