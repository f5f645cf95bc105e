"""Mail through the outbox: delivered over real SMTP, never lost, never holding a secret."""

import logging
import re
import threading
import time
from datetime import timedelta

import time_machine

from config import db
from conftest import PASSWORD, link_token
from mailer import deliver_due, queue_notice, start_sender, stop_sender
from services import free_port


def queue(app, count):
    with app.app_context():
        for i in range(count):
            queue_notice(f"user{i}@example.com", f"Notice {i}", "Hello.")
        db.session.commit()


def test_a_mail_server_that_is_down_delays_mail_but_loses_nothing(
    app, verified, mailbox, sql, monkeypatch, caplog
):
    alice = verified("alice")
    monkeypatch.setitem(app.config, "MAIL_PORT", free_port())  # nothing listens there
    with time_machine.travel(timedelta(0), tick=False) as clock:
        response = alice.patch(
            "/me", json={"email": "new@example.com", "current_password": PASSWORD}
        )
        assert response.status_code == 200  # the change stands
        with caplog.at_level(logging.WARNING, logger="mail"):
            assert mailbox.deliver() == []
        assert "to be retried" in caplog.text
        [(attempts, error)] = sql("SELECT attempts, last_error FROM outbox")
        assert attempts == 1 and "ConnectionRefusedError" in error
        assert sql("SELECT email FROM users") == [("new@example.com",)]

        monkeypatch.undo()  # the mail server is back
        assert mailbox.deliver() == []  # not before the backoff has passed
        clock.shift(timedelta(seconds=11))
        [notice] = mailbox.deliver()
    assert notice["To"] == "alice@example.com"
    assert sql("SELECT count(*) FROM outbox") == [(0,)]


def test_a_failed_reset_mail_leaves_no_usable_token_behind(
    app, verified, mailbox, sql, monkeypatch
):
    verified("alice")
    app.test_client().post("/password-reset", json={"email": "alice@example.com"})
    monkeypatch.setitem(app.config, "MAIL_PORT", free_port())
    mailbox.deliver()
    assert sql("SELECT count(*) FROM one_time_tokens WHERE purpose = 'password_reset'") == [(0,)]
    monkeypatch.undo()
    with time_machine.travel(timedelta(seconds=11)):
        [message] = mailbox.deliver()
    token = link_token(message)
    response = app.test_client().post(
        "/password-reset/confirm", json={"token": token, "new_password": "brand new secret words"}
    )
    assert response.status_code == 204


def test_the_outbox_never_holds_a_secret(app, signup, mailbox, sql):
    signup("alice", email="alice@example.com")
    app.test_client().post("/password-reset", json={"email": "alice@example.com"})
    rows = sql("SELECT kind, to_address, subject, body FROM outbox ORDER BY id")
    assert rows == [
        ("email_verification", "alice@example.com", None, None),
        ("password_reset", "alice@example.com", None, None),
    ]


def test_without_mail_server_mail_goes_to_the_log(app, signup, mailbox, monkeypatch, caplog):
    monkeypatch.setitem(app.config, "MAIL_SERVER", "")
    alice = signup("alice", email="alice@example.com")
    with caplog.at_level(logging.INFO, logger="mail"):
        assert mailbox.deliver() == []
    assert "MAIL_SERVER is not set" in caplog.text
    assert "Subject: Confirm your email address" in caplog.text
    # the link is logged decoded (not quoted-printable), so it can be copied and used
    token = re.search(r"/verify-email#token=([A-Za-z0-9_-]+)\n", caplog.text).group(1)
    response = alice.post("/email-verification/confirm", json={"token": token})
    assert response.status_code == 200


def test_concurrent_senders_send_each_message_exactly_once(app, mailbox):
    queue(app, 12)
    barrier = threading.Barrier(3)

    def sender():
        barrier.wait()
        with app.app_context():
            while deliver_due(limit=4):
                pass

    threads = [threading.Thread(target=sender) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    received = sorted(m["Subject"] for m in mailbox.deliver())
    assert received == sorted(f"Notice {i}" for i in range(12))


def test_the_sender_thread_delivers_on_commit(app, signup, mailbox, monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_POLL_SECONDS", 30)  # so only the commit can wake it
    start_sender(app)
    try:
        signup("alice", email="alice@example.com")
        deadline = time.monotonic() + 10
        while len(mailbox.inbox.messages) == mailbox.seen and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop_sender()
    [message] = mailbox.inbox.messages[mailbox.seen :]
    assert message["Subject"] == "Confirm your email address"


def test_messages_have_sender_and_text(app, verified, mailbox):
    verified("alice")
    app.test_client().post("/password-reset", json={"email": "alice@example.com"})
    [message] = mailbox.deliver()
    assert message["From"] == app.config["MAIL_FROM"]
    assert message.get_content_type() == "text/plain"
    assert PASSWORD not in message.get_content()
