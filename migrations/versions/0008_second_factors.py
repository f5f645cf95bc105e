"""second factors: TOTP, recovery codes, logins waiting for their second factor; when each
session and API token last proved who it is

`totp_factors` holds one TOTP secret per user, encrypted (MFA_ENCRYPTION_KEY), pending until a
first code confirms it, and the last time step accepted (a code is good once). `recovery_codes`
holds their keyed hashes, each usable once. `pending_logins` is a login whose password was right
and whose second factor is awaited (its cookie holds a random key; its SHA-256 is stored).
`authenticated_at` on sessions and API tokens is when the credential last proved who it is
(a login, a sign-up, POST /reauthenticate): sensitive routes want it recent. Existing rows take
their creation time.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "totp_factors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("secret", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_step", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_totp_factors_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_totp_factors")),
        sa.UniqueConstraint("user_id", name=op.f("uq_totp_factors_user_id")),
    )
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_recovery_codes_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_codes")),
        sa.UniqueConstraint("user_id", "code_hash", name=op.f("uq_recovery_codes_user_id_code_hash")),
    )
    op.create_table(
        "pending_logins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("remember", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("auth_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_pending_logins_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_logins")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_pending_logins_key_hash")),
    )
    for table in ("sessions", "api_tokens"):
        op.add_column(table, sa.Column("authenticated_at", sa.DateTime(timezone=True), nullable=True))
        op.execute(f"UPDATE {table} SET authenticated_at = created_at")  # noqa: S608 (fixed names)
        with op.batch_alter_table(table) as batch:
            batch.alter_column("authenticated_at", existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade():
    for table in ("api_tokens", "sessions"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("authenticated_at")
    op.drop_table("pending_logins")
    op.drop_table("recovery_codes")
    op.drop_table("totp_factors")
