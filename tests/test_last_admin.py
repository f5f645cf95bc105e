"""Never zero active admins once there is one: the database refuses it (migration 0005), so two
admins demoting or disabling each other at the same moment cannot both win."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

import resources.admin
from config import db
from conftest import BACKEND, PASSWORD, enable_totp
from services import FLASK, engine_for
from test_deploy import run

LAST_ADMIN = {
    "error": "That would leave no active administrator. Make another user an admin first."
}
ACTIVE_ADMINS = "SELECT username FROM users WHERE role = 'admin' AND disabled_at IS NULL"
REMOVALS = {
    "demote": {"role": "user"},
    "disable": {"disabled": True},
    "demote and disable": {"role": "user", "disabled": True},
}


def cli(app, *args):
    return app.test_cli_runner().invoke(args=["users", *args])


def logged_in(app, user_id):
    """A client with a new session for user_id (no login: 30 rounds would hit its limit)."""
    client = app.test_client()
    with client.session_transaction() as session:
        session["user_id"] = user_id
    return client


def execute(app, statement):
    """Run SQL on a connection of its own and commit, as psql or sqlite3 would."""
    with app.app_context():
        with db.engine.begin() as connection:
            return connection.execute(text(statement))


@pytest.fixture
def two_admins(app, signup, sql):
    for name in ("alice", "bob"):
        enable_totp(signup(name))  # MFA_REQUIRED_ROLES: admins need a second factor
        assert cli(app, "promote", name).exit_code == 0
    execute(app, "DELETE FROM security_events")  # the sign-ups': the tests count what follows
    return dict(sql("SELECT username, id FROM users"))


@pytest.mark.parametrize(
    "first, second",
    [
        ("demote", "demote"),
        ("disable", "disable"),
        ("demote", "disable"),
        ("demote and disable", "disable"),
    ],
)
def test_two_admins_removing_each_other_at_the_same_moment_leave_one(
    app, two_admins, sql, monkeypatch, first, second
):
    """Both requests are past the admin check, with the other still an admin, before either
    writes: a check in the application would let both through."""
    barrier = threading.Barrier(2)
    real = resources.admin.json_body

    def both_past_the_checks():
        barrier.wait(timeout=10)
        return real()

    monkeypatch.setattr(resources.admin, "json_body", both_past_the_checks)
    alice, bob = two_admins["alice"], two_admins["bob"]

    def remove(caller, target, body):
        response = logged_in(app, caller).patch(f"/admin/users/{target}", json=body)
        return response.status_code, response.get_json()

    for _ in range(30):
        with ThreadPoolExecutor(2) as pool:
            answers = list(
                pool.map(remove, (alice, bob), (bob, alice), (REMOVALS[first], REMOVALS[second]))
            )
        assert sorted(status for status, _ in answers) == [200, 409], answers
        assert [body for status, body in answers if status == 409] == [LAST_ADMIN]
        [(winner,)] = sql(ACTIVE_ADMINS)
        loser = "bob" if winner == "alice" else "alice"
        # the refused request wrote nothing: every event is about the loser
        assert sql("SELECT DISTINCT user_id FROM security_events") == [(two_admins[loser],)]
        execute(  # both admins again, for the next round
            app,
            "UPDATE users SET role = 'admin', disabled_at = NULL "
            "WHERE username IN ('alice', 'bob')",
        )
        execute(app, "DELETE FROM security_events")


def test_an_admin_demoted_during_their_own_request_cannot_remove_the_other(
    app, two_admins, sql, monkeypatch
):
    """The same race, one step at a time: alice's request to demote bob passes the admin check,
    then bob's demotion of alice commits; alice's write is refused by the database: 409."""
    real = resources.admin.json_body

    def alice_demoted_meanwhile():
        execute(app, "UPDATE users SET role = 'user' WHERE username = 'alice'")
        return real()

    monkeypatch.setattr(resources.admin, "json_body", alice_demoted_meanwhile)
    bob = logged_in(app, two_admins["bob"])
    response = logged_in(app, two_admins["alice"]).patch(
        f"/admin/users/{two_admins['bob']}", json={"disabled": True}
    )
    assert (response.status_code, response.get_json()) == (409, LAST_ADMIN)
    assert sql(ACTIVE_ADMINS) == [("bob",)]
    assert bob.get("/me").status_code == 200  # not disabled, sessions kept
    assert sql("SELECT count(*) FROM security_events") == [(0,)]


if BACKEND == "postgresql":  # SQLite has one writer at a time and no older snapshot to trust

    def test_a_repeatable_read_snapshot_older_than_a_removal_cannot_remove_the_other(
        app, two_admins, sql
    ):
        """A transaction that saw both admins before alice's demotion committed must not trust
        that view when it demotes bob: a serialization failure, to retry."""
        with app.app_context():
            engine = db.engine
        with engine.connect() as stale:
            stale.execution_options(isolation_level="REPEATABLE READ")
            assert sorted(stale.execute(text(ACTIVE_ADMINS)).scalars()) == ["alice", "bob"]
            execute(app, "UPDATE users SET role = 'user' WHERE username = 'alice'")
            with pytest.raises(OperationalError, match="could not serialize"):
                stale.execute(text("UPDATE users SET role = 'user' WHERE username = 'bob'"))
            stale.rollback()
        assert sql(ACTIVE_ADMINS) == [("bob",)]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE users SET role = 'user' WHERE username = 'alice'",
        "UPDATE users SET disabled_at = CURRENT_TIMESTAMP WHERE username = 'alice'",
        "UPDATE users SET role = 'user'",
        "DELETE FROM users WHERE username = 'alice'",
        "DELETE FROM users WHERE role = 'admin'",
    ],
)
def test_the_database_itself_refuses_to_remove_the_last_admin(app, signup, sql, statement):
    signup("alice")
    signup("bob")
    assert cli(app, "promote", "alice").exit_code == 0
    with pytest.raises(IntegrityError, match="users_last_admin"):
        execute(app, statement)
    assert sql("SELECT username, role, disabled_at FROM users ORDER BY id") == [
        ("alice", "admin", None),
        ("bob", "user", None),
    ]


def test_with_two_admins_one_may_go(app, signup, sql):
    signup("alice")
    signup("bob")
    signup("carol")
    for name in ("alice", "bob"):
        assert cli(app, "promote", name).exit_code == 0
    execute(app, "UPDATE users SET disabled_at = CURRENT_TIMESTAMP WHERE username = 'bob'")
    execute(app, "UPDATE users SET role = 'user' WHERE username = 'carol'")  # not an admin: no rule
    with pytest.raises(IntegrityError, match="users_last_admin"):
        execute(app, "DELETE FROM users WHERE username = 'alice'")
    assert sql(ACTIVE_ADMINS) == [("alice",)]


def test_a_fresh_install_has_no_admin_and_that_is_fine(app, signup, sql):
    signup("alice")
    signup("bob")
    execute(app, "UPDATE users SET role = 'user', disabled_at = CURRENT_TIMESTAMP")
    execute(app, "UPDATE users SET disabled_at = NULL")
    execute(app, "DELETE FROM users WHERE username = 'bob'")
    assert cli(app, "promote", "alice").exit_code == 0  # how the first admin is made
    assert sql(ACTIVE_ADMINS) == [("alice",)]


def test_the_last_admin_may_go_with_every_other_user(app, signup, sql):
    """An empty table is a fresh install again (also how the suite cleans up)."""
    signup("alice")
    assert cli(app, "promote", "alice").exit_code == 0
    execute(app, "DELETE FROM users")
    assert sql("SELECT count(*) FROM users") == [(0,)]


def test_the_cli_refuses_to_demote_the_last_admin(app, signup, sql):
    signup("alice")
    signup("bob")
    assert cli(app, "promote", "alice").exit_code == 0
    result = cli(app, "demote", "alice")
    assert result.exit_code == 1
    assert result.output == (
        "Error: that would leave no active administrator; promote another user first\n"
    )
    assert sql(ACTIVE_ADMINS) == [("alice",)]
    assert cli(app, "promote", "bob").exit_code == 0
    assert cli(app, "demote", "alice").output == "alice is now a user.\n"
    assert sql(ACTIVE_ADMINS) == [("bob",)]


def test_the_last_admin_cannot_delete_their_account(app, signup, sql):
    alice = signup("alice")
    signup("bob")
    assert cli(app, "promote", "alice").exit_code == 0
    response = alice.delete("/me", json={"password": PASSWORD})
    assert (response.status_code, response.get_json()) == (409, LAST_ADMIN)
    assert alice.get("/me").status_code == 200
    assert cli(app, "promote", "bob").exit_code == 0
    assert alice.delete("/me", json={"password": PASSWORD}).status_code == 204
    assert sql(ACTIVE_ADMINS) == [("bob",)]


def test_the_triggers_exist_after_upgrading_to_head(empty_database):
    """SQLite batch migrations rebuild a table and drop its triggers: one that rebuilds users
    after 0005 must create them again."""
    upgrade = run([*FLASK, "db", "upgrade"], empty_database)
    assert upgrade.returncode == 0, upgrade.stderr
    engine = engine_for(empty_database)
    with engine.connect() as conn:
        if BACKEND == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'users'"
        else:
            query = "SELECT tgname FROM pg_trigger WHERE tgrelid = 'users'::regclass"
            query += " AND NOT tgisinternal"
        names = sorted(row[0] for row in conn.execute(text(query)))
    expected = ["users_last_admin"]
    if BACKEND == "sqlite":
        expected = ["users_last_admin_delete", "users_last_admin_update"]
    assert names == expected
    engine.dispose()
    downgrade = run([*FLASK, "db", "downgrade", "0004"], empty_database)
    assert downgrade.returncode == 0, downgrade.stderr
    with engine.connect() as conn:
        assert conn.execute(text(query)).all() == []
    engine.dispose()
