"""Mail through a transactional outbox.

A change and the mail that reports it are written in one transaction (an `outbox` row), so a mail
server that is down delays the mail but never loses it, and never undoes the change. A sender
thread in each worker delivers due rows over SMTP, claiming each one first so that several workers
never send the same message, and retries failures with backoff, up to MAIL_MAX_ATTEMPTS; then,
or at once when the server refuses the message itself (5xx), the row is marked failed, logged once
as an error, and waits for an operator (`flask mail failed`, `flask mail retry`). Addresses go
out in their stored form, the domain in ASCII, so any server takes them; only a non-ASCII local
part needs the server's SMTPUTF8, and a server without it is a permanent failure. Links with
tokens are minted when the message is sent, so the outbox never holds a secret; a password-reset
request is queued as just an address, which keeps that request's work identical whether or not
the address is known. With no MAIL_SERVER the message is written to the log instead (development).
"""

import logging
import smtplib
import ssl
import threading
from datetime import timedelta
from email.message import EmailMessage
from typing import Any, cast

from flask import Flask, current_app
from sqlalchemy import CursorResult, event, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from config import db
from database import database_unavailable
from field_types import email_lookup
from models import ERROR_MAX_LENGTH, OutboxMessage, User, utcnow
from throttles import within_limit
from tokens import mint_link_token

log = logging.getLogger("mail")
_wake = threading.Event()
_stop = threading.Event()
_sender: threading.Thread | None = None
_sender_lock = threading.Lock()


# --- queueing, inside the caller's transaction ---


def _queue(**fields: object) -> None:
    db.session.add(OutboxMessage(**fields))
    db.session.info["outbox"] = True


def queue_notice(to_address: str, subject: str, body: str) -> None:
    _queue(kind="notice", to_address=to_address, subject=subject, body=body)


def queue_password_reset(email: str) -> None:
    _queue(kind="password_reset", to_address=email)


def queue_email_verification(user: User) -> None:
    _queue(kind="email_verification", to_address=user.email, user_id=user.id)


def notify_owner(user: User, subject: str, body: str) -> None:
    """Mail the owner, at an address they have proved is theirs (never a stranger's)."""
    if user.email and user.email_verified:
        queue_notice(user.email, subject, f"Hello {user.username},\n\n{body}")


@event.listens_for(Session, "after_commit")
def _wake_sender(session: Session) -> None:
    if session.info.pop("outbox", False):
        _wake.set()


# --- delivery ---


class Undeliverable(Exception):
    """This message cannot be delivered as it is: trying again would not help."""


def _message(to_address: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = current_app.config["MAIL_FROM"]
    message["To"] = email_lookup(to_address)  # a row queued before 0006 may hold a Unicode domain
    message["Subject"] = subject
    message.set_content(body)
    return message


def _link(path: str, token: str) -> str:
    # The token travels in the fragment, which browsers send neither to servers nor in Referer.
    return f"{current_app.config['FRONTEND_URL'].rstrip('/')}/{path}#token={token}"


def verified_owner(address: str, other_than: int) -> User | None:
    """The account that has confirmed address, if it is not user other_than."""
    return db.session.scalar(
        select(User).where(
            func.lower(User.email) == address,
            User.id != other_than,
            User.email_verified_at.is_not(None),
        )
    )


def owner_notice(owner: User) -> tuple[str, str, str] | None:
    """(to, subject, body) telling a verified owner that another account entered their
    address, or None once they have heard it RATELIMIT_EMAIL_VERIFICATION times this hour."""
    # A verified owner has an address: verified_owner() found them by it.
    if not within_limit("RATELIMIT_EMAIL_VERIFICATION", "owner", cast(str, owner.email)):
        return None
    return (
        cast(str, owner.email),
        "Someone tried to use your email address",
        f"Hello {owner.username},\n\nAnother account entered this email address, which your "
        "account has confirmed. It stays yours: that account cannot confirm it, log in with "
        "it or reset a password with it.\n\nYou need not do anything.\n",
    )


def compose(row: OutboxMessage) -> EmailMessage | None:
    """The message for an outbox row, or None when there is nothing (any longer) to send."""
    config = current_app.config
    if row.kind == "notice":
        # a notice has both: queue_notice() sets them
        return _message(row.to_address, cast(str, row.subject), cast(str, row.body))
    if row.kind == "password_reset":
        user = db.session.scalar(
            select(User).where(
                func.lower(User.email) == email_lookup(row.to_address),
                User.email_verified_at.is_not(None),
                User.disabled_at.is_(None),
            )
        )
        if user is None:
            return None  # unknown, unverified or disabled: nothing is sent, and nobody can tell
        # Bound to the address it goes to: if the account's address changes, the link dies.
        token = mint_link_token(
            user, "password_reset", config["PASSWORD_RESET_LIFETIME"], user.email
        )
        minutes = int(config["PASSWORD_RESET_LIFETIME"].total_seconds() // 60)
        return _message(
            cast(str, user.email),  # found by it
            "Reset your password",
            (
                f"Hello {user.username},\n\nSomeone asked to reset the password of your account. "
                f"To choose a new password, open this link within {minutes} minutes:\n\n"
                f"{_link('reset-password', token)}\n\n"
                "If it was not you, ignore this message: your password stays as it is.\n"
            ),
        )
    if row.kind == "email_verification":
        user = db.session.get(User, row.user_id)
        if user is None or user.email != row.to_address:
            return None  # the address changed since; its own verification will follow
        owner = verified_owner(user.email, user.id)
        if owner is not None:  # confirmed by another account: a link could not confirm it
            notice = owner_notice(owner)
            return None if notice is None else _message(*notice)
        token = mint_link_token(
            user, "email_verification", config["EMAIL_VERIFICATION_LIFETIME"], user.email
        )
        return _message(
            user.email,
            "Confirm your email address",
            (
                f"Hello {user.username},\n\nTo confirm that this is your email address, open:\n\n"
                f"{_link('verify-email', token)}\n"
            ),
        )
    raise ValueError(f"unknown outbox kind {row.kind!r}")


def send(message: EmailMessage) -> None:
    config = current_app.config
    if not config["MAIL_SERVER"]:
        log.info(  # decoded, so a developer can copy the link as it is
            "MAIL_SERVER is not set; this mail was not sent:\nTo: %s\nSubject: %s\n\n%s",
            message["To"],
            message["Subject"],
            message.get_content(),
        )
        return
    with smtplib.SMTP(config["MAIL_SERVER"], config["MAIL_PORT"], timeout=10) as smtp:
        if config["MAIL_USE_TLS"]:
            smtp.starttls(context=ssl.create_default_context())
        if config["MAIL_USERNAME"]:
            smtp.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"])
        smtp.ehlo_or_helo_if_needed()  # (again after STARTTLS) so its extensions are known
        if _needs_smtputf8(message) and not smtp.has_extn("smtputf8"):
            raise Undeliverable("the mail server does not offer SMTPUTF8, which this address needs")
        smtp.send_message(message)  # adds SMTPUTF8 (and 8BITMIME) itself when an address needs it


def _needs_smtputf8(message: EmailMessage) -> bool:
    """An address (not a display name) that is not ASCII: its local part, as domains are ASCII."""
    return any(
        not address.addr_spec.isascii()
        for name in ("From", "To")
        for address in message[name].addresses
    )


def _permanent(error: Exception) -> bool:
    """A refusal of this message (5xx to its recipient or its content) that retrying cannot change.
    A 5xx to the login or the sender is the server's configuration: retried like an outage."""
    if isinstance(error, Undeliverable):
        return True
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    return isinstance(error, smtplib.SMTPDataError) and error.smtp_code >= 500


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(10 * 2 ** (attempts - 1), 3600))  # 10 s, 20 s, ... 1 h


def deliver_due(limit: int = 20) -> int:
    """Send the messages that are due; return how many were handled. Safe to run anywhere."""
    now = utcnow()
    due = db.session.scalars(
        select(OutboxMessage.id)
        .where(OutboxMessage.next_attempt_at <= now, OutboxMessage.failed_at.is_(None))
        .order_by(OutboxMessage.id)
        .limit(limit)
    ).all()
    db.session.commit()
    handled = 0
    for message_id in due:
        claim = cast(
            CursorResult[Any],
            db.session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == message_id,
                    OutboxMessage.next_attempt_at <= now,
                    OutboxMessage.failed_at.is_(None),
                )
                .values(next_attempt_at=now + timedelta(minutes=5)),  # a lease while we send
            ),
        )
        db.session.commit()
        if claim.rowcount != 1:
            continue  # another worker has it
        row = db.session.get(OutboxMessage, message_id)
        try:
            message = compose(cast(OutboxMessage, row))  # claimed just above
            if message is not None:
                send(message)
            db.session.delete(row)
            db.session.commit()
            handled += 1
        except (smtplib.SMTPException, OSError, Undeliverable) as error:
            db.session.rollback()  # drops any token minted for the message that did not go out
            _record_failure(message_id, error)
    return handled


def _record_failure(message_id: int, error: Exception) -> None:
    row = db.session.get(OutboxMessage, message_id)
    if row is None:
        return  # its user was deleted meanwhile, and the message with them
    row.attempts += 1
    row.last_error = f"{type(error).__name__}: {error}"[:ERROR_MAX_LENGTH]
    if _permanent(error) or row.attempts >= current_app.config["MAIL_MAX_ATTEMPTS"]:
        row.failed_at = utcnow()  # never picked again, so this is logged once
        db.session.commit()
        log.error(
            "mail %s (%s to %s) failed after %d attempt(s) and will not be retried "
            "(flask mail failed / flask mail retry %s): %s",
            row.id,
            row.kind,
            row.to_address,
            row.attempts,
            row.id,
            row.last_error,
        )
        return
    row.next_attempt_at = utcnow() + _backoff(row.attempts)
    db.session.commit()
    log.warning("mail %s to be retried at %s: %s", message_id, row.next_attempt_at, row.last_error)


# --- operator commands (flask mail ...) ---


def failed_messages() -> list[OutboxMessage]:
    return list(
        db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.failed_at.is_not(None))
            .order_by(OutboxMessage.id)
        )
    )


def retry_failed(ids: list[int] | None = None) -> list[int]:
    """Queue failed messages again (those of `ids`, or all), attempts reset; return their ids.
    The senders pick them up at their next poll."""
    query = select(OutboxMessage).where(OutboxMessage.failed_at.is_not(None))
    if ids is not None:
        query = query.where(OutboxMessage.id.in_(ids))
    rows = db.session.scalars(query.order_by(OutboxMessage.id)).all()
    now = utcnow()
    for row in rows:
        row.failed_at, row.attempts, row.next_attempt_at = None, 0, now
    db.session.commit()
    return [row.id for row in rows]


def start_sender(app: Flask) -> None:
    """Start this process's sender thread once; it wakes on every commit that queued mail."""
    global _sender
    if _sender is not None and _sender.is_alive():
        return  # the common case, without taking the lock
    with _sender_lock:
        if _sender is not None and _sender.is_alive():
            return

        def run() -> None:
            while not _stop.is_set():
                _wake.wait(timeout=app.config["MAIL_POLL_SECONDS"])
                _wake.clear()
                try:
                    with app.app_context():
                        while deliver_due():
                            pass
                except Exception as error:
                    if database_unavailable(error):  # one line per poll, as requests log it
                        log.warning(
                            "mail delivery waits for the database: %s",
                            type(cast(DBAPIError, error).orig).__name__,
                        )
                    else:
                        log.exception("mail delivery failed; will try again")

        _stop.clear()
        _sender = threading.Thread(target=run, name="mail-sender", daemon=True)
        _sender.start()


def stop_sender(timeout: float = 10) -> None:
    global _sender
    with _sender_lock:
        if _sender is not None:
            _stop.set()
            _wake.set()
            _sender.join(timeout)
            _sender = None
