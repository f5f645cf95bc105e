"""Environment first, then the app: Flask-SQLAlchemy binds its engine when the app is imported.

Each run makes a database of its own (a temporary SQLite file, or a fresh PostgreSQL database on
the server named by TEST_DATABASE_URL), builds it with the real migrations, and drops it after.
"""

import email
import email.policy
import itertools
import os
import shutil
import sys
import uuid
from contextlib import contextmanager

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from services import PASSWORD, ROOT, delete_redis_keys, free_port, redis_server, scratch_database

sys.path.insert(0, str(ROOT / "server"))

os.environ["APP_ENV"] = "testing"
os.environ["BCRYPT_LOG_ROUNDS"] = "4"
# This run's own database: a new one on TEST_DATABASE_URL's PostgreSQL server, else SQLite.
os.environ["DATABASE_URL"], _drop_database = scratch_database(
    os.environ.get("TEST_DATABASE_URL", "")
)
# The rate limiter runs on the real Redis when TEST_REDIS_URL names one, under keys of this run's
# own prefix (deleted at the end); otherwise in memory.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
os.environ["REDIS_URL"] = REDIS_URL
os.environ["RATELIMIT_KEY_PREFIX"] = f"iam-test-{uuid.uuid4().hex[:12]}"
for name in list(os.environ):  # the suite tests the default limits, origins and mail settings
    if name.startswith(("RATELIMIT_", "MAIL_")) and name != "RATELIMIT_KEY_PREFIX":
        del os.environ[name]
os.environ["CORS_ORIGINS"] = "https://app.example.com"
os.environ["FRONTEND_URL"] = "https://app.example.com"
# A real SMTP server on loopback (aiosmtpd), started before the first test delivers mail.
MAIL_PORT = free_port()
os.environ.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=str(MAIL_PORT))

from flask.testing import FlaskClient  # noqa: E402

from app import app as flask_app  # noqa: E402
from config import db  # noqa: E402
from ratelimit import counters  # noqa: E402


class Client(FlaskClient):
    """Every test client comes from an address of its own, as separate people would, and
    reads and closes each response at once, as a server does (running call_on_close work)."""

    numbers = itertools.count(1)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        n = next(self.numbers)
        self.environ_base["REMOTE_ADDR"] = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"

    def open(self, *args, buffered=True, **kwargs):
        return super().open(*args, buffered=buffered, **kwargs)


flask_app.test_client_class = Client

BACKEND = make_url(os.environ["DATABASE_URL"]).get_backend_name()  # "sqlite" or "postgresql"


def pytest_report_header():
    return [
        f"database: {BACKEND} ({make_url(os.environ['DATABASE_URL'])!r})",
        f"rate limits: {REDIS_URL or 'memory'}",
    ]


def _migrate():
    """At import, not in a fixture: schemathesis generates (and logs in) while collecting."""
    import flask_migrate

    with flask_app.app_context():
        flask_migrate.upgrade()


_migrate()


@pytest.fixture(scope="session", autouse=True)
def database():
    yield
    with flask_app.app_context():
        db.engine.dispose()
    _drop_database()
    if REDIS_URL:
        delete_redis_keys(REDIS_URL, os.environ["RATELIMIT_KEY_PREFIX"])


def clean_database():
    """Every row gone and every rate-limit counter reset."""
    counters.reset()
    with flask_app.app_context():
        db.session.remove()
        for table in reversed(db.metadata.sorted_tables):
            if table.name == "users":  # active admins last: SQLite checks 0005's rule per row
                db.session.execute(
                    text("DELETE FROM users WHERE role <> 'admin' OR disabled_at IS NOT NULL")
                )
            db.session.execute(table.delete())
        db.session.commit()


@pytest.fixture(autouse=True)
def clean_tables(database):
    counters.reset()
    yield
    clean_database()


@pytest.fixture
def app():
    return flask_app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def signup(app):
    """signup("bob") -> a test client logged in as a new user; its JSON is on client.user."""

    def make(username="alice", password=PASSWORD, email=None):
        client = app.test_client()
        body = {"username": username, "password": password}
        if email:
            body["email"] = email
        response = client.post("/signup", json=body)
        assert response.status_code == 201, response.get_json()
        client.user = response.get_json()
        return client

    return make


def login(client, username="alice", password=PASSWORD, remember=None, **request):
    """POST /login through a test client; remember goes in the body when given, anything else
    (headers=...) to the request."""
    body = {"username": username, "password": password}
    if remember is not None:
        body["remember"] = remember
    return client.post("/login", json=body, **request)


def enable_totp(client):
    """Turn TOTP on for a test client's user, through the API, as an authenticator app would:
    {"secret", "recovery_codes"}. The code that confirmed it is used up: the next one that
    works is the next 30-second step's (move time on with time_machine)."""
    import pyotp

    setup = client.post("/me/mfa/totp")
    assert setup.status_code == 200, setup.get_json()
    secret = setup.get_json()["secret"]
    confirmed = client.post("/me/mfa/totp/confirm", json={"code": pyotp.TOTP(secret).now()})
    assert confirmed.status_code == 200, confirmed.get_json()
    return {"secret": secret, "recovery_codes": confirmed.get_json()["recovery_codes"]}


def cookie_of(client):
    """The value of a test client's session cookie, which it must have."""
    cookie = client.get_cookie("session")
    assert cookie is not None, "no session cookie"
    return cookie.value


def replay(app, cookie_value):
    """A fresh test client that sends nothing but a copied session cookie, as a thief would."""
    client = app.test_client()
    client.set_cookie("session", cookie_value)
    return client


@pytest.fixture
def queries(app):
    """with queries() as statements: ... -> the SQL statements run inside the block, through
    SQLAlchemy's engine or a PreparedSelect."""
    from queries import executed

    @contextmanager
    def record():
        statements = []

        def before_cursor_execute(conn, cursor, statement, *args):
            statements.append(statement)

        def prepared(sender, statement, parameters):
            statements.append(statement)

        with app.app_context():
            engine = db.engine
        statements.clear()
        event.listen(engine, "before_cursor_execute", before_cursor_execute)
        executed.connect(prepared)
        try:
            yield statements
        finally:
            event.remove(engine, "before_cursor_execute", before_cursor_execute)
            executed.disconnect(prepared)

    return record


@pytest.fixture(scope="session")
def redis_url():
    """A real Redis: TEST_REDIS_URL, or a private redis-server on a spare port for this run."""
    if REDIS_URL:
        yield REDIS_URL
        return
    if shutil.which("redis-server") is None:
        pytest.skip("needs Redis: set TEST_REDIS_URL or install redis-server")
    with redis_server() as server:
        yield server.url


@pytest.fixture
def empty_database(tmp_path):
    """A database URL of the suite's kind with nothing in it, for a child process; dropped after."""
    if BACKEND == "sqlite":
        yield f"sqlite:///{tmp_path}/empty.db"
        return
    url, drop = scratch_database(os.environ["DATABASE_URL"], "iam_child")
    yield url
    drop()


class Inbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 Message accepted"


@pytest.fixture(scope="session")
def smtp_server():
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=MAIL_PORT)
    controller.start()
    yield controller, inbox
    controller.stop()


class Mailbox:
    def __init__(self, app, inbox):
        self.app, self.inbox = app, inbox
        self.seen = len(inbox.messages)

    def deliver(self):
        """Run the outbox (as the sender thread would) and return the messages that arrived."""
        from mailer import deliver_due

        with self.app.app_context():
            while deliver_due():
                pass
        new = self.inbox.messages[self.seen :]
        self.seen = len(self.inbox.messages)
        return new


@pytest.fixture
def mailbox(app, smtp_server):
    return Mailbox(app, smtp_server[1])


@pytest.fixture
def verified(signup, mailbox):
    """verified("bob") -> a logged-in client whose email (bob@example.com) is confirmed."""

    def make(username="alice", password=PASSWORD):
        client = signup(username, password, email=f"{username}@example.com")
        [message] = mailbox.deliver()
        response = client.post("/email-verification/confirm", json={"token": link_token(message)})
        assert response.status_code == 200, response.get_json()
        client.user = response.get_json()
        return client

    return make


def link_token(message):
    """The token of the link in a message (links carry it in the URL fragment)."""
    import re

    match = re.search(
        r"https://app\.example\.com/[a-z-]+#token=([A-Za-z0-9_-]+)", message.get_content()
    )
    assert match, message.get_content()
    return match.group(1)


@pytest.fixture
def sql(app):
    """sql("SELECT ...") -> rows, read straight from the database rather than through the API."""

    def run(statement, **params):
        with app.app_context():
            return db.session.execute(text(statement), params).all()

    return run


def pytest_sessionfinish(session, exitstatus):
    """In CI a skipped test is a failed test: it proved nothing."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if os.environ.get("CI") == "true" and skipped:
        reporter.write_line(f"CI: {len(skipped)} test(s) skipped; failing the run.", red=True)
        session.exitstatus = 1
