"""Delivery to real SMTP servers on loopback (aiosmtpd), with and without SMTPUTF8: addresses in a
form the server can take, and a bounded number of attempts, after which an operator sees the
message (`flask mail failed`) and can send it again (`flask mail retry`)."""

import logging
from datetime import timedelta

import pytest
import time_machine
from aiosmtpd.controller import Controller
from sqlalchemy import text

from config import db
from conftest import PASSWORD, link_token
from mailer import deliver_due, queue_notice
from services import FLASK, engine_for, free_port
from test_deploy import run
from test_production import start
from test_settings import DEVELOPMENT

IDN = "u@xn--e1afmkfd.xn--p1ai"  # u@пример.рф, in the ASCII form every mail server takes
UTF8_LOCAL = "пользователь@xn--e1afmkfd.xn--p1ai"  # no ASCII form: it needs SMTPUTF8


class Recorder:
    """An aiosmtpd handler that keeps every envelope, and refuses recipients when told to."""

    def __init__(self):
        self.envelopes = []
        self.recipients_asked = 0
        self.refuse = None  # e.g. "451 Try again later"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.recipients_asked += 1
        if self.refuse:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted"


@pytest.fixture
def smtp(app, monkeypatch):
    """smtp(smtputf8=False) -> the Recorder of a fresh SMTP server that the app now mails to."""
    controllers = []

    def serve(smtputf8):
        recorder, port = Recorder(), free_port()
        controller = Controller(recorder, hostname="127.0.0.1", port=port, enable_SMTPUTF8=smtputf8)
        controller.start()
        controllers.append(controller)
        monkeypatch.setitem(app.config, "MAIL_PORT", port)
        return recorder

    yield serve
    for controller in controllers:
        controller.stop()


def deliver(app):
    with app.app_context():
        while deliver_due():
            pass


def outbox(sql):
    return sql("SELECT to_address, attempts, failed_at IS NOT NULL, last_error FROM outbox")


def mail_cli(app, *args):
    return app.test_cli_runner().invoke(args=["mail", *args])


def mail_errors(caplog):
    return [r for r in caplog.records if r.name == "mail" and r.levelno >= logging.ERROR]


# --- addresses ---


def test_an_idn_address_is_stored_in_ascii_form_and_reaches_a_server_without_smtputf8(
    app, signup, smtp, sql
):
    server = smtp(smtputf8=False)
    alice = signup("alice", email="U@Пример.РФ")
    assert alice.user["email"] == IDN
    assert sql("SELECT email FROM users") == [(IDN,)]
    deliver(app)
    [envelope] = server.envelopes
    assert envelope.rcpt_tos == [IDN] and not envelope.smtp_utf8
    assert f"To: {IDN}" in envelope.content.decode()
    assert outbox(sql) == []


@pytest.mark.parametrize("spelling", ["u@пример.рф", "U@ПРИМЕР.РФ", IDN, IDN.upper()])
def test_every_spelling_of_an_idn_address_is_the_same_address(app, signup, mailbox, sql, spelling):
    alice = signup("alice", email="u@пример.рф")
    [message] = mailbox.deliver()
    assert message["To"] == IDN
    confirmed = alice.post("/email-verification/confirm", json={"token": link_token(message)})
    assert confirmed.status_code == 200

    login = app.test_client().post("/login", json={"username": spelling, "password": PASSWORD})
    assert login.status_code == 200, login.get_json()
    app.test_client().post(
        "/signup", json={"username": "bob", "password": PASSWORD, "email": spelling}
    )  # refused, or accepted as an unverified claim: either way, to the same address
    assert sql("SELECT DISTINCT email FROM users") == [(IDN,)]
    mailbox.deliver()  # whatever that sign-up mailed
    app.test_client().post("/password-reset", json={"email": spelling})
    [reset] = mailbox.deliver()
    assert reset["To"] == IDN and "/reset-password#token=" in reset.get_content()


def test_a_non_ascii_local_part_goes_out_over_smtputf8_when_the_server_offers_it(
    app, signup, smtp, sql
):
    server = smtp(smtputf8=True)
    alice = signup("alice", email="Пользователь@пример.рф")
    assert alice.user["email"] == UTF8_LOCAL
    deliver(app)
    [envelope] = server.envelopes
    assert envelope.rcpt_tos == [UTF8_LOCAL] and envelope.smtp_utf8
    assert outbox(sql) == []


def test_a_non_ascii_local_part_fails_at_once_on_a_server_without_smtputf8(
    app, signup, smtp, sql, caplog
):
    server = smtp(smtputf8=False)
    with time_machine.travel(timedelta(0), tick=False) as clock:
        signup("alice", email="пользователь@пример.рф")
        with caplog.at_level(logging.WARNING, logger="mail"):
            deliver(app)
            for _ in range(3):  # it is never tried again
                clock.shift(timedelta(hours=2))
                deliver(app)
    assert server.envelopes == [] and server.recipients_asked == 0
    [(to, attempts, failed, error)] = outbox(sql)
    assert (to, attempts, failed) == (UTF8_LOCAL, 1, True)
    assert "SMTPUTF8" in error
    [logged] = mail_errors(caplog)
    assert "failed after 1 attempt(s)" in logged.getMessage()


# --- bounded attempts ---


@pytest.mark.parametrize("fault", ["server down", "451 refusal"])
def test_mail_that_keeps_failing_stops_after_max_attempts_and_can_be_retried_by_hand(
    app, smtp, sql, monkeypatch, caplog, fault
):
    monkeypatch.setitem(app.config, "MAIL_MAX_ATTEMPTS", 3)
    server = smtp(smtputf8=False)
    working_port = app.config["MAIL_PORT"]
    if fault == "server down":
        monkeypatch.setitem(app.config, "MAIL_PORT", free_port())  # nothing listens there
    else:
        server.refuse = "451 4.3.0 Try again later"
    with app.app_context():
        queue_notice("carol@example.com", "Notice", "Hello.")
        db.session.commit()
    with time_machine.travel(timedelta(0), tick=False) as clock:
        with caplog.at_level(logging.WARNING, logger="mail"):
            deliver(app)
            for wait in (10, 20, 3600, 3600, 3600):  # the backoff, then long after
                clock.shift(timedelta(seconds=wait + 1))
                deliver(app)
    [(to, attempts, failed, error)] = outbox(sql)
    assert (to, attempts, failed) == ("carol@example.com", 3, True)
    assert server.recipients_asked == (3 if fault == "451 refusal" else 0)
    [logged] = mail_errors(caplog)  # logged once, as an error
    assert "carol@example.com" in logged.getMessage() and "3 attempt(s)" in logged.getMessage()
    [id_] = [row[0] for row in sql("SELECT id FROM outbox")]

    listing = mail_cli(app, "failed")
    assert listing.exit_code == 0
    [line] = listing.output.splitlines()
    fields = line.split("\t")
    assert fields[:4] == [str(id_), "notice", "carol@example.com", "3"]
    assert ("ConnectionRefusedError" if fault == "server down" else "451") in fields[5]

    monkeypatch.setitem(app.config, "MAIL_PORT", working_port)
    server.refuse = None  # the mail server is back
    deliver(app)
    assert server.envelopes == []  # a failed message waits for the operator
    retry = mail_cli(app, "retry", str(id_))
    assert retry.exit_code == 0 and "1 message(s) queued again" in retry.output
    deliver(app)
    [envelope] = server.envelopes
    assert envelope.rcpt_tos == ["carol@example.com"]
    assert outbox(sql) == []
    assert mail_cli(app, "failed").output == "No failed mail.\n"


def test_a_permanent_refusal_fails_at_once(app, smtp, sql, caplog):
    server = smtp(smtputf8=False)
    server.refuse = "550 5.1.1 No such user"
    with app.app_context():
        queue_notice("nobody@example.com", "Notice", "Hello.")
        db.session.commit()
    with time_machine.travel(timedelta(0), tick=False) as clock:
        with caplog.at_level(logging.WARNING, logger="mail"):
            deliver(app)
            clock.shift(timedelta(hours=1))
            deliver(app)
    assert server.recipients_asked == 1
    [(_, attempts, failed, error)] = outbox(sql)
    assert (attempts, failed) == (1, True) and "550" in error
    assert len(mail_errors(caplog)) == 1


def test_mail_retry_all_and_its_mistakes(app, smtp, sql):
    server = smtp(smtputf8=False)
    server.refuse = "550 No"
    with app.app_context():
        for name in ("a", "b"):
            queue_notice(f"{name}@example.com", "Notice", "Hello.")
        db.session.commit()
    deliver(app)
    assert [row[2] for row in outbox(sql)] == [True, True]
    ids = [row[0] for row in sql("SELECT id FROM outbox ORDER BY id")]

    assert mail_cli(app, "retry").exit_code == 2  # neither ids nor --all
    assert mail_cli(app, "retry", "--all", str(ids[0])).exit_code == 2  # both
    unknown = mail_cli(app, "retry", str(ids[0]), "999999")
    assert unknown.exit_code == 1 and "no failed message with id 999999" in unknown.output
    assert sql("SELECT attempts FROM outbox ORDER BY id") == [(0,), (1,)]  # the known one went

    server.refuse = None
    result = mail_cli(app, "retry", "--all")
    assert result.exit_code == 0 and "1 message(s) queued again" in result.output
    deliver(app)
    assert sorted(e.rcpt_tos[0] for e in server.envelopes) == ["a@example.com", "b@example.com"]


def test_max_attempts_is_checked_at_startup():
    env = {**DEVELOPMENT, "APP_ENV": "development", "MAIL_MAX_ATTEMPTS": "0"}
    code, lines = start(env)
    assert code == 3
    assert "MAIL_MAX_ATTEMPTS='0' is not a whole number from 1 to 100" in lines[0]


# --- the migration ---


def test_the_migration_moves_stored_domains_to_ascii_and_back(empty_database):
    assert run([*FLASK, "db", "upgrade", "0005"], empty_database).returncode == 0
    engine = engine_for(empty_database)
    with engine.begin() as conn:
        for id_, email in ((1, "u@пример.рф"), (2, "пользователь@пример.рф"), (3, "a@b.com")):
            conn.execute(
                text(
                    "INSERT INTO users (id, username, password_hash, created_at, email) "
                    "VALUES (:id, :name, 'x', '2026-01-01 00:00:00', :email)"
                ),
                {"id": id_, "name": f"user{id_}", "email": email},
            )
        conn.execute(
            text(
                "INSERT INTO one_time_tokens (user_id, purpose, token_hash, email, created_at, "
                "expires_at) VALUES (1, 'email_verification', 'h', 'u@пример.рф', "
                "'2026-01-01 00:00:00', '2030-01-01 00:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO outbox (kind, to_address, created_at, attempts, next_attempt_at) "
                "VALUES ('password_reset', 'u@пример.рф', '2026-01-01 00:00:00', 0, "
                "'2026-01-01 00:00:00')"
            )
        )

    def addresses():
        with engine.connect() as conn:
            return [
                conn.execute(text("SELECT email FROM users ORDER BY id")).scalars().all(),
                conn.execute(text("SELECT email FROM one_time_tokens")).scalars().all(),
                conn.execute(text("SELECT to_address FROM outbox")).scalars().all(),
            ]

    up = run([*FLASK, "db", "upgrade", "0006"], empty_database)
    assert up.returncode == 0, up.stderr
    assert addresses() == [[IDN, UTF8_LOCAL, "a@b.com"], [IDN], [IDN]]
    down = run([*FLASK, "db", "downgrade", "0005"], empty_database)
    assert down.returncode == 0, down.stderr
    assert addresses() == [
        ["u@пример.рф", "пользователь@пример.рф", "a@b.com"],
        ["u@пример.рф"],
        ["u@пример.рф"],
    ]
    engine.dispose()


def test_the_migration_stops_if_two_accounts_would_share_an_address(empty_database):
    assert run([*FLASK, "db", "upgrade", "0005"], empty_database).returncode == 0
    engine = engine_for(empty_database)
    with engine.begin() as conn:  # rows written around the application, in both forms
        for id_, email in ((1, "u@пример.рф"), (2, IDN)):
            conn.execute(
                text(
                    "INSERT INTO users (id, username, password_hash, created_at, email) "
                    "VALUES (:id, :name, 'x', '2026-01-01 00:00:00', :email)"
                ),
                {"id": id_, "name": f"user{id_}", "email": email},
            )
    up = run([*FLASK, "db", "upgrade", "0006"], empty_database)
    assert up.returncode != 0
    assert "users 1 would share an email address" in up.stderr
    with engine.connect() as conn:
        emails = conn.execute(text("SELECT email FROM users ORDER BY id")).scalars().all()
    assert emails == ["u@пример.рф", IDN]  # nothing changed
    engine.dispose()
