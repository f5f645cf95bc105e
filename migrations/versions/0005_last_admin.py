"""users: the database refuses to remove the last active administrator

An active administrator is a row with role = 'admin' AND disabled_at IS NULL. Once there is one,
no UPDATE (demote, disable) or DELETE may leave none while any user remains: two admins who
demote or disable each other at the same moment cannot both win, whoever runs what (the API,
the CLI, psql, sqlite3). A fresh install has no admin, and that is fine: the rule only fires when
an active admin is changed or deleted. Deleting every user (the table left empty, as at a fresh
install) is allowed.

PostgreSQL: an AFTER UPDATE OF role, disabled_at OR DELETE row trigger, for rows that were an
active admin, takes a transaction-level advisory lock, then counts. The lock is held to commit,
so removals of admins run one at a time from the count on; under READ COMMITTED each statement in
the function takes a new snapshot, so a removal that waited for the lock sees the one that held it
as committed. Under REPEATABLE READ or SERIALIZABLE the snapshot may predate that commit, so the
function first locks the admins it still sees (FOR SHARE), which fails with a serialization
error (40001, retry) if one of them was changed meanwhile. The refusal is SQLSTATE 23514
(check_violation) with constraint name users_last_admin.

SQLite: two row triggers (update, delete) that RAISE(ABORT). SQLite runs one writer at a time,
and a trigger runs inside its write transaction, reading the latest committed state, so the
count cannot be overtaken. SQLite checks after each row, PostgreSQL after each statement: on
SQLite a statement that deletes every user must delete the admins last.

Not covered (bypasses an owner or a superuser chooses): PostgreSQL's TRUNCATE (it empties the
table, which the rule allows), ALTER TABLE ... DISABLE TRIGGER, session_replication_role =
replica; SQLite's REPLACE conflict resolution, which deletes the conflicting row without firing
delete triggers unless PRAGMA recursive_triggers is on.

FUTURE MIGRATIONS: on SQLite, op.batch_alter_table("users") rebuilds the table, and the rebuild
DROPS THESE TRIGGERS silently. A migration that batch-alters users must create them again
afterwards on SQLite (copy SQLITE below, as 0002 restores the username index);
tests/test_last_admin.py checks that they exist after `flask db upgrade` to head.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# In the SQL below: users_last_admin names the trigger(s), the function, and the constraint in
# the error, which the application recognises; 1633971566 (b"admn" as an integer) is this rule's
# pg_advisory_xact_lock key; an active admin is role = 'admin' AND disabled_at IS NULL.

POSTGRESQL = [
    """
    CREATE FUNCTION users_last_admin() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND NEW.role = 'admin' AND NEW.disabled_at IS NULL THEN
            RETURN NULL;  -- still an active admin
        END IF;
        -- One removal at a time, until its transaction ends.
        PERFORM pg_advisory_xact_lock(1633971566);
        IF current_setting('transaction_isolation') <> 'read committed' THEN
            -- The snapshot may predate a removal committed while this one waited: locking the
            -- admins it still sees raises a serialization failure if one of them changed.
            PERFORM 1 FROM users WHERE role = 'admin' AND disabled_at IS NULL FOR SHARE;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND disabled_at IS NULL)
                AND EXISTS (SELECT 1 FROM users) THEN
            RAISE EXCEPTION USING
                MESSAGE = 'users_last_admin: that would leave no active administrator',
                ERRCODE = 'check_violation',
                TABLE = 'users',
                CONSTRAINT = 'users_last_admin';
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER users_last_admin AFTER UPDATE OF role, disabled_at OR DELETE ON users
    FOR EACH ROW WHEN (OLD.role = 'admin' AND OLD.disabled_at IS NULL)
    EXECUTE FUNCTION users_last_admin()
    """,
]

SQLITE = [
    """
    CREATE TRIGGER users_last_admin_update AFTER UPDATE OF role, disabled_at ON users
    FOR EACH ROW WHEN OLD.role = 'admin' AND OLD.disabled_at IS NULL
    BEGIN
        SELECT RAISE(ABORT, 'users_last_admin: that would leave no active administrator')
        WHERE NOT EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND disabled_at IS NULL);
    END
    """,
    """
    CREATE TRIGGER users_last_admin_delete AFTER DELETE ON users
    FOR EACH ROW WHEN OLD.role = 'admin' AND OLD.disabled_at IS NULL
    BEGIN
        SELECT RAISE(ABORT, 'users_last_admin: that would leave no active administrator')
        WHERE NOT EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND disabled_at IS NULL)
        AND EXISTS (SELECT 1 FROM users);
    END
    """,
]


def upgrade():
    for statement in {"postgresql": POSTGRESQL, "sqlite": SQLITE}[op.get_bind().dialect.name]:
        op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS users_last_admin ON users")
        op.execute("DROP FUNCTION IF EXISTS users_last_admin()")
    else:
        op.execute("DROP TRIGGER IF EXISTS users_last_admin_update")
        op.execute("DROP TRIGGER IF EXISTS users_last_admin_delete")
