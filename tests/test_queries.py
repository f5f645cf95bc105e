"""PreparedSelect (server/queries.py) runs the hottest reads without SQLAlchemy's per-call
machinery: its rows must be what Connection.execute() gives, its failures SQLAlchemy's."""

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, bindparam, event, select
from sqlalchemy.exc import DBAPIError

from config import db
from conftest import BACKEND
from models import Post, UserSession, UTCDateTime
from queries import PreparedSelect, executed
from resources.posts import LIST_POSTS
from sessions import SESSION_BY_KEY, hash_key


def core_rows(statement, **params):
    with db.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(statement, params)]


def typed(rows):
    return [[(type(value), value) for value in row] for row in rows]


def test_rows_are_what_sqlalchemy_returns_types_included(app, signup):
    alice = signup("alice", email="alice@example.com")
    signup("bobby")
    for n in range(3):
        assert alice.post("/posts", json={"content": f"post {n}"}).status_code == 201
    with app.app_context():
        key_hash = db.session.scalar(select(UserSession.key_hash).order_by(UserSession.id))
        first_id = db.session.scalar(select(Post.id).order_by(Post.id))
        lookup = SESSION_BY_KEY.first(key_hash=key_hash)
        assert typed([lookup]) == typed(core_rows(SESSION_BY_KEY.statement, key_hash=key_hash))
        assert lookup.username == "alice" and lookup.email == "alice@example.com"
        assert lookup.created_at.tzinfo is not None  # an aware datetime on SQLite too
        assert lookup.email_verified is False and lookup.remember is False  # bools, not 0
        assert SESSION_BY_KEY.first(key_hash=hash_key("no such key")) is None

        for (before, by_user), prepared in LIST_POSTS.items():
            params = {"limit": 2}
            if before:
                params["before"] = first_id + 1  # the oldest post only
            if by_user:
                params["user_id"] = alice.user["id"]
            rows = prepared.all(**params)
            assert rows and typed(rows) == typed(core_rows(prepared.statement, **params))
            assert rows[0].id == rows[0][0] and rows[0].user_username == "alice"
            assert len(rows) == (2 if not before else 1)


def test_parameters_that_need_converting_are_refused(app):
    """A UTCDateTime parameter is converted on the way in (to naive UTC on SQLite): that is
    Connection.execute()'s work, so PreparedSelect will not run it."""
    statement = select(UserSession.id).where(
        UserSession.expires_at > bindparam("now", type_=UTCDateTime)
    )
    with app.app_context(), pytest.raises(TypeError, match="needs conversion"):
        PreparedSelect(statement).all(now=None)


def test_driver_errors_are_sqlalchemy_errors_and_the_connection_goes_back(app):
    missing = Table("no_such_table", MetaData(), Column("id", Integer))
    with app.app_context():
        checked_out = db.engine.pool.checkedout()
        with pytest.raises(DBAPIError) as failure:
            PreparedSelect(select(missing.c.id).where(missing.c.id == bindparam("n"))).all(n=987654)
        assert "no_such_table" in str(failure.value.orig)
        assert "987654" not in str(failure.value)  # hide_parameters holds: no values in logs
        assert db.engine.pool.checkedout() == checked_out  # returned, not leaked
        assert PreparedSelect(select(Post.id)).all() == []  # and the pool still works


def test_listeners_hear_the_statements_it_runs(app, signup):
    heard = []

    def listen(sender, statement, parameters):
        heard.append((sender, statement, parameters))

    alice = signup()
    executed.connect(listen)
    try:
        assert alice.get("/check_session").status_code == 200
    finally:
        executed.disconnect(listen)
    [(sender, statement, parameters)] = heard
    assert sender is SESSION_BY_KEY and "FROM users JOIN sessions" in statement
    assert len(str(parameters)) > 64  # the key's hash, never the key itself


def test_a_read_runs_outside_any_transaction(app, signup, tmp_path):
    """The session lookup opens no transaction: on PostgreSQL (in autocommit) that saves the
    BEGIN and ROLLBACK round trips; SQLite's driver begins none for a SELECT. What the driver
    sent (libpq's trace; SQLite's trace callback) has the query and nothing around it, and the
    connection goes back to the pool as the ORM wants it (not in autocommit)."""
    alice = signup()
    with app.app_context():
        engine = db.engine
    engine.pool.dispose()  # the next checkout makes a new connection, traced from its start
    trace, files, seen = tmp_path / "driver.trace", [], []

    def start_trace(dbapi_connection, _record):
        if BACKEND == "sqlite":
            dbapi_connection.set_trace_callback(seen.append)
        else:
            files.append(trace.open("w"))
            dbapi_connection.pgconn.trace(files[-1].fileno())

    event.listen(engine, "connect", start_trace)
    try:
        with app.app_context():
            assert SESSION_BY_KEY.first(key_hash=hash_key("no such key")) is None
            if BACKEND != "sqlite":
                with engine.connect() as connection:  # the same, and only, pooled connection
                    assert connection.connection.dbapi_connection.autocommit is False
    finally:
        event.remove(engine, "connect", start_trace)
        for file in files:
            file.close()
        engine.pool.dispose()
    sent = "\n".join(seen) if BACKEND == "sqlite" else trace.read_text()
    assert "key_hash" in sent, sent
    assert "BEGIN" not in sent.upper() and "ROLLBACK" not in sent.upper(), sent
    assert alice.get("/check_session").status_code == 200


def test_a_connection_lost_during_a_read_is_dropped_and_the_next_read_works(app):
    """On PostgreSQL the statement ends its own server process (what a restart does to a
    pooled connection mid-query): the error is a DBAPIError saying the connection was
    invalidated, and the next read gets a new connection. On SQLite a file cannot go away, so
    there it is an ordinary failing statement."""
    from sqlalchemy import func

    if BACKEND == "sqlite":
        statement = select(Table("gone", MetaData(), Column("id", Integer)).c.id)
    else:
        statement = select(func.pg_terminate_backend(func.pg_backend_pid()))
    with app.app_context():
        checked_out = db.engine.pool.checkedout()
        with pytest.raises(DBAPIError) as failure:
            PreparedSelect(statement).all()
        assert failure.value.connection_invalidated is (BACKEND != "sqlite")
        assert db.engine.pool.checkedout() == checked_out
        assert PreparedSelect(select(Post.id)).all() == []
        with db.engine.connect() as connection:  # whatever the pool hands out is usable
            assert connection.exec_driver_sql("SELECT 1").scalar() == 1
