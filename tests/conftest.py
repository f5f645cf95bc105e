"""Environment first, then the app: Flask-SQLAlchemy binds its engine when the app is imported.

Each run makes a database of its own (a temporary SQLite file, or a fresh PostgreSQL database on
the server named by TEST_DATABASE_URL), builds it with the real migrations, and drops it after.
"""

import os
import shutil
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))

PASSWORD = "correct horse battery"


def _admin_url(url):
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _create_database():
    """Return (DATABASE_URL for this run, a function that drops it)."""
    server = os.environ.get("TEST_DATABASE_URL", "")
    if server.startswith("postgres"):
        import psycopg

        url = make_url(server.replace("postgres://", "postgresql://", 1))
        name = f"iam_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_admin_url(url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

        def drop():
            with psycopg.connect(_admin_url(url), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        return _admin_url(url.set(database=name)), drop
    directory = tempfile.mkdtemp(prefix="iam-test-")
    return f"sqlite:///{directory}/test.db", lambda: shutil.rmtree(directory, ignore_errors=True)


os.environ["APP_ENV"] = "testing"
os.environ["BCRYPT_LOG_ROUNDS"] = "4"
os.environ["DATABASE_URL"], _drop_database = _create_database()

from app import app as flask_app  # noqa: E402
from config import db  # noqa: E402

BACKEND = make_url(os.environ["DATABASE_URL"]).get_backend_name()  # "sqlite" or "postgresql"


def pytest_report_header():
    return f"database: {BACKEND} ({make_url(os.environ['DATABASE_URL'])!r})"


@pytest.fixture(scope="session", autouse=True)
def database():
    import flask_migrate

    with flask_app.app_context():
        flask_migrate.upgrade()
    yield
    with flask_app.app_context():
        db.engine.dispose()
    _drop_database()


@pytest.fixture(autouse=True)
def clean_tables(database):
    yield
    with flask_app.app_context():
        db.session.remove()
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()


@pytest.fixture
def app():
    return flask_app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def signup(app):
    """signup("bob") -> a test client logged in as a new user; its JSON is on client.user."""

    def make(username="alice", password=PASSWORD):
        client = app.test_client()
        response = client.post("/signup", json={"username": username, "password": password})
        assert response.status_code == 201, response.get_json()
        client.user = response.get_json()
        return client

    return make


@pytest.fixture
def queries(app):
    """with queries() as statements: ... -> the SQL statements run inside the block."""

    @contextmanager
    def record():
        statements = []

        def before_cursor_execute(conn, cursor, statement, *args):
            statements.append(statement)

        with app.app_context():
            engine = db.engine
        statements.clear()
        event.listen(engine, "before_cursor_execute", before_cursor_execute)
        try:
            yield statements
        finally:
            event.remove(engine, "before_cursor_execute", before_cursor_execute)

    return record


@pytest.fixture
def sql(app):
    """sql("SELECT ...") -> rows, read straight from the database rather than through the API."""

    def run(statement, **params):
        with app.app_context():
            return db.session.execute(text(statement), params).all()

    return run


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """In CI a skipped test is a failed test: it proved nothing."""
    skipped = terminalreporter.stats.get("skipped", [])
    if os.environ.get("CI") == "true" and skipped:
        terminalreporter.write_line(
            f"CI: {len(skipped)} test(s) skipped; failing the run.", red=True
        )
        terminalreporter._session.exitstatus = 1
