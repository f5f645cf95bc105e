"""The documented deploy path, run for real: migrations on an empty database, then gunicorn."""

import json
import os
import re
import subprocess

import pytest
from sqlalchemy import inspect, text

from conftest import ROOT
from services import FLASK, GUNICORN, engine_for, fetch, free_port, session_cookie, wait_until_up


def run(args, database_url, **kwargs):
    env = {**os.environ, "DATABASE_URL": database_url, "APP_ENV": "development"}
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, **kwargs
    )


def test_migrations_build_the_schema_the_models_describe(empty_database):
    upgrade = run([*FLASK, "db", "upgrade"], empty_database)
    assert upgrade.returncode == 0, upgrade.stderr
    check = run([*FLASK, "db", "check"], empty_database)
    assert check.returncode == 0, check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr

    engine = engine_for(empty_database)
    schema = inspect(engine)
    assert {"users", "posts", "sessions", "alembic_version"} <= set(schema.get_table_names())
    [fk] = schema.get_foreign_keys("posts")
    assert fk["referred_table"] == "users" and fk["options"].get("ondelete") == "CASCADE"
    assert not [
        c["name"] for c in schema.get_columns("posts") if c["nullable"] and c["name"] != "id"
    ]
    with engine.begin() as conn:  # the case-insensitive unique index exists in the database itself
        conn.execute(
            text(
                "INSERT INTO users (username, password_hash, created_at) "
                "VALUES ('Alice', 'x', '2026-01-01 00:00:00')"
            )
        )
        with pytest.raises(Exception, match="(?i)unique"):
            with conn.begin_nested():
                conn.execute(
                    text(
                        "INSERT INTO users (username, password_hash, created_at) "
                        "VALUES ('aLICE', 'y', '2026-01-01 00:00:00')"
                    )
                )
        verified = "email_verified_at = '2026-01-01 00:00:00'"
        conn.execute(text(f"UPDATE users SET email = 'Alice@Example.com', {verified}"))
        conn.execute(
            text(
                "INSERT INTO users (username, password_hash, created_at) "
                "VALUES ('bob', 'y', '2026-01-01 00:00:00')"
            )
        )
        # an unverified claim to the same address is allowed (it never blocks the owner)...
        conn.execute(text("UPDATE users SET email = 'alice@example.COM' WHERE username = 'bob'"))
        with pytest.raises(Exception, match="(?i)unique"):  # ...a second verified one is not
            with conn.begin_nested():
                conn.execute(text(f"UPDATE users SET {verified} WHERE username = 'bob'"))
    engine.dispose()


def test_upgrading_keeps_the_data(empty_database):
    """Each migration applied to a database with rows in it: nothing may be lost on the way
    (SQLite batch mode rebuilds tables, which once cascaded posts and sessions away)."""
    assert run([*FLASK, "db", "upgrade", "0001"], empty_database).returncode == 0
    engine = engine_for(empty_database)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, username, password_hash, created_at) "
                "VALUES (1, 'Alice', 'x', '2026-01-01 00:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO posts (content, created_at, updated_at, user_id) "
                "VALUES ('kept', '2026-01-01 00:00:00', '2026-01-01 00:00:00', 1)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO sessions (key_hash, user_id, remember, created_at, "
                "last_seen_at, expires_at) VALUES ('h', 1, false, '2026-01-01 00:00:00', "
                "'2026-01-01 00:00:00', '2030-01-01 00:00:00')"
            )
        )
    upgrade = run([*FLASK, "db", "upgrade"], empty_database)
    assert upgrade.returncode == 0, upgrade.stderr
    with engine.connect() as conn:
        counts = [
            conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
            for t in ("users", "posts", "sessions")
        ]
        assert counts == [1, 1, 1]
    with pytest.raises(Exception, match="(?i)unique"):  # the username index survived
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (username, password_hash, created_at) "
                    "VALUES ('aLiCe', 'y', '2026-01-01 00:00:00')"
                )
            )
    downgrade = run([*FLASK, "db", "downgrade", "0001"], empty_database)
    assert downgrade.returncode == 0, downgrade.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM posts")).scalar() == 1
    engine.dispose()


def test_downgrade_and_upgrade_round_trip(empty_database):
    assert run([*FLASK, "db", "upgrade"], empty_database).returncode == 0
    down = run([*FLASK, "db", "downgrade", "base"], empty_database)
    assert down.returncode == 0, down.stderr
    engine = engine_for(empty_database)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    assert run([*FLASK, "db", "upgrade"], empty_database).returncode == 0


def request(url, method="GET", body=None, cookie=None):
    return fetch(url, method, body, {"Cookie": cookie} if cookie else None)


def test_gunicorn_serves_the_app_with_the_documented_command(empty_database):
    assert run([*FLASK, "db", "upgrade"], empty_database).returncode == 0
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": empty_database,
        "APP_ENV": "development",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "BCRYPT_LOG_ROUNDS": "4",
    }
    server = subprocess.Popen(
        GUNICORN,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/check_session", server)
        status, headers, body = request(base + "/check_session")
        assert status == 401 and json.loads(body) == {"error": "Authentication required."}
        assert headers["Content-Type"] == "application/json"

        status, headers, body = request(
            base + "/signup", "POST", {"username": "alice", "password": "correct horse"}
        )
        assert status == 201, body
        cookie = session_cookie(headers.get_all("Set-Cookie")).split(";")[0]
        for _ in range(4):  # the session lives in the database, so every worker knows it
            status, _, body = request(base + "/check_session", cookie=cookie)
            assert status == 200 and json.loads(body)["username"] == "alice"
        assert request(base + "/nope")[0] == 404
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "Traceback" not in output, output
    access = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert {line["path"] for line in access} >= {"/check_session", "/signup"}  # JSON lines
    assert all(re.fullmatch(r"[0-9a-f]{32}", line["request_id"]) for line in access)
    # gunicorn.conf.py was read: threads, and only the loopback interface
    assert "Using worker: gthread" in output, output
    assert f"Listening at: http://127.0.0.1:{port}" in output, output


def test_the_content_check_migration_trims_and_refuses_to_guess(empty_database):
    """0004 adds the CHECK on posts.content. Surrounding spaces are trimmed (what the API always
    stored); a row still blank or over 400 characters stops the upgrade with its id, and
    nothing changes, so the operator decides what to do with it."""
    assert run([*FLASK, "db", "upgrade", "0003"], empty_database).returncode == 0
    engine = engine_for(empty_database)
    insert = text(
        "INSERT INTO posts (id, content, created_at, updated_at, user_id) "
        "VALUES (:id, :content, '2026-01-01 00:00:00', '2026-01-01 00:00:00', 1)"
    )
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, username, password_hash, created_at) "
                "VALUES (1, 'alice', 'x', '2026-01-01 00:00:00')"
            )
        )
        conn.execute(insert, {"id": 1, "content": "  padded  "})
        conn.execute(insert, {"id": 2, "content": "   "})
    refused = run([*FLASK, "db", "upgrade"], empty_database)
    assert refused.returncode != 0
    assert "1 post(s) are blank or longer than 400 characters (ids: 2)" in refused.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT content FROM posts ORDER BY id")).scalars().all() == [
            "  padded  ",
            "   ",
        ]
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM posts WHERE id = 2"))
    upgrade = run([*FLASK, "db", "upgrade"], empty_database)
    assert upgrade.returncode == 0, upgrade.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT content FROM posts")).scalars().all() == ["padded"]
    with pytest.raises(Exception, match="(?i)check"):
        with engine.begin() as conn:
            conn.execute(insert, {"id": 3, "content": ""})
    engine.dispose()
