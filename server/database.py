"""The database: its URL, timeouts and pragmas, the models' base class, and the session's end.

Nothing waits on the database longer than DATABASE_TIMEOUT seconds: then it is a 503.
"""

import time
from typing import Any, cast

import psycopg
from flask import Flask, has_request_context
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import CursorResult, Dialect, Executable, MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session


class Model(DeclarativeBase):
    """The base of every table (Flask-SQLAlchemy's db.Model), with constraint names that
    migrations can refer to."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def database_url(url: str) -> str:
    """A DATABASE_URL as SQLAlchemy wants it: postgresql:// means psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def engine_options(url: str, timeout: int) -> dict[str, Any]:
    """SQLALCHEMY_ENGINE_OPTIONS for url, where nothing waits longer than timeout seconds."""
    options: dict[str, Any] = {"pool_pre_ping": True, "hide_parameters": True}
    if url.startswith("sqlite"):
        options.update(
            connect_args={"timeout": timeout},  # waiting for SQLite's write lock
            pool_pre_ping=False,  # a file does not go away like a server connection does
        )
        return options
    options.update(
        pool_timeout=timeout,
        connect_args={
            "connect_timeout": timeout,
            "options": f"-c statement_timeout={timeout * 1000}",
            # A server that stops answering (frozen, or its network gone) fails the connection
            # instead of hanging it: unacknowledged writes give up after the timeout, and
            # keepalives find a dead peer on an idle connection.
            "tcp_user_timeout": timeout * 1000,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "request_deadline": timeout + 0.5,  # DeadlineConnection's, taken out before connecting
        },
    )
    return options


class DeadlineConnection(psycopg.Connection[Any]):
    """statement_timeout is the server's to enforce, and tcp_user_timeout covers only data the
    server's kernel never acknowledged: a server process that is stopped while its kernel still
    answers (SIGSTOP, `docker pause`, a backend stuck in I/O) would hold a request forever. So
    during a request every wait on the connection gives up after `deadline` (DATABASE_TIMEOUT
    + 0.5 s, letting statement_timeout speak first) and closes it: the pool drops it and the
    request gets its 503."""

    deadline = 5.5

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        deadline = None
        if not args[1:] and kwargs.get("timeout") is None and has_request_context():
            deadline = kwargs["timeout"] = self.deadline
        started = time.monotonic()
        try:
            return super().wait(gen, *args, **kwargs)
        except psycopg.OperationalError:
            # psycopg signals the timeout with an OperationalError of its own (a private
            # class): ours is the one that came when the deadline had passed.
            if deadline is None or time.monotonic() - started < deadline:
                raise
            self.pgconn.finish()  # mid-protocol: the connection cannot be used again
            raise psycopg.OperationalError(
                f"no answer from the database within {deadline} s"
            ) from None


@event.listens_for(Engine, "do_connect")
def connect_with_deadline(
    dialect: Dialect, _record: Any, cargs: Any, cparams: dict[str, Any]
) -> Any:
    if "request_deadline" not in cparams:
        return None  # SQLite: SQLAlchemy connects as usual
    # A copy: some SQLAlchemy releases hand every connection the same cparams.
    params = {name: value for name, value in cparams.items() if name != "request_deadline"}
    if dialect.driver != "psycopg" or dialect.is_async:
        return dialect.connect(*cargs, **params)
    connection = DeadlineConnection.connect(*cargs, **params)
    connection.deadline = cparams["request_deadline"]
    return connection


@event.listens_for(Engine, "connect")
def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """SQLite enforces foreign keys only when asked, and WAL lets readers run beside a writer."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()


def rows_affected(session: Session | scoped_session[Any], statement: Executable) -> int:
    """Run an UPDATE or DELETE; how many rows it changed."""
    return cast(CursorResult[Any], session.execute(statement)).rowcount


def database_unavailable(e: BaseException) -> bool:
    """The database could not be reached or the connection broke: a 503, not a bug."""
    return isinstance(e, OperationalError) or (
        isinstance(e, DBAPIError) and e.connection_invalidated
    )


def end_sessions_safely(app: Flask, db: SQLAlchemy) -> None:
    """teardown_appcontext: end the request's session even when the database went away during
    it: a failed rollback must not turn the response already built (a 503) into the server's
    HTML 500. Registered after Flask-SQLAlchemy's own teardown, so it runs first (Flask runs
    them in reverse), which then finds nothing left to do."""

    @app.teardown_appcontext
    def end_database_session(exc: BaseException | None) -> None:
        try:
            db.session.remove()
        except DBAPIError:
            app.logger.warning("database session close failed; discarding its connection")
            try:
                db.session().invalidate()
            except DBAPIError:
                pass
            db.session.registry.clear()
