"""email uniqueness binds verified addresses only

An unverified address used to hold the unique index, so anyone could squat someone else's
address: its owner then got "already in use" at sign-up and PATCH /me. Now only verified
addresses are unique (a partial index); unverified claims are indexed for lookups only.
Confirming an address removes other accounts' unverified claims to it (the application).

Downgrade restores the plain unique index; unverified claims that share an address with another
row are cleared first (set to NULL), since that index cannot hold them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

VERIFIED = sa.text("email_verified_at IS NOT NULL")


def upgrade():
    # Plain index operations: no table rebuild, so SQLite keeps the users table's triggers.
    op.drop_index("uq_users_email_lower", table_name="users")
    op.create_index(
        "uq_users_verified_email_lower",
        "users",
        [sa.text("lower(email)")],
        unique=True,
        sqlite_where=VERIFIED,
        postgresql_where=VERIFIED,
    )
    op.create_index("ix_users_email_lower", "users", [sa.text("lower(email)")])


def downgrade():
    op.execute(
        "UPDATE users SET email = NULL WHERE email_verified_at IS NULL AND lower(email) IN "
        "(SELECT lower(email) FROM users WHERE email IS NOT NULL "
        "GROUP BY lower(email) HAVING count(*) > 1)"
    )
    op.drop_index("ix_users_email_lower", table_name="users")
    op.drop_index("uq_users_verified_email_lower", table_name="users")
    op.create_index("uq_users_email_lower", "users", [sa.text("lower(email)")], unique=True)
