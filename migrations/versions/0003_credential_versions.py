"""credential versions on users, sessions and tokens; emails stored lowercased

A session or token is good only while its auth_version equals its user's: a password change,
reset or disable bumps the user's, which also ends logins that were already past bcrypt when
the change committed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("users", "sessions", "api_tokens")


def upgrade():
    for table in TABLES:  # a plain ADD COLUMN: no table rebuild, on SQLite either
        op.add_column(
            table, sa.Column("auth_version", sa.Integer(), nullable=False, server_default="0")
        )
    # Emails compare without regard to case; SQLite's lower() knows only ASCII, so the stored
    # form is lowercased by the application (Python) from now on, and here for existing rows.
    op.execute("UPDATE users SET email = lower(email) WHERE email IS NOT NULL")


def downgrade():
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("auth_version")
    # SQLite's batch mode rebuilt users without its expression indexes; PostgreSQL kept them.
    for name, column in (("uq_users_username_lower", "username"), ("uq_users_email_lower", "email")):
        op.create_index(
            name, "users", [sa.text(f"lower({column})")], unique=True, if_not_exists=True
        )
