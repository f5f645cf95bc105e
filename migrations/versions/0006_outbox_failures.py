"""outbox.failed_at; email addresses stored with their domain in ASCII (IDNA)

Mail is given up on after MAIL_MAX_ATTEMPTS (or a refusal no retry can change): `failed_at` marks
the row, which the sender then leaves for an operator (`flask mail failed`, `flask mail retry`).

Addresses with an internationalized domain were stored as `u@пример.рф`, which a mail server
without SMTPUTF8 refuses; they become `u@xn--e1afmkfd.xn--p1ai`, the form the application now
stores, looks up and sends (server/models.py `stored_email`), in users, in the link tokens that
vouch for an address (so links already mailed keep working) and in queued mail. A non-ASCII local
part keeps its letters (it has no ASCII form). If two accounts would end up with the same address
(possible only for rows older than 0003's lowercasing on SQLite), the migration stops with their
ids and changes nothing, so the operator decides which keeps it. Downgrade turns the domains back.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from collections import Counter

import sqlalchemy as sa
from alembic import op
from email_validator import EmailNotValidError, validate_email

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The only names put into SQL text below (the addresses travel as bound parameters).
COLUMNS = (("users", "email"), ("one_time_tokens", "email"), ("outbox", "to_address"))


def ascii_domain_form(value):
    """server/models.py stored_email() as it was when this was written; None if no address."""
    try:
        address = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return None
    if address.ascii_email is not None:
        return address.ascii_email.lower()
    return f"{address.local_part.lower()}@{address.ascii_domain}"


def unicode_domain_form(value):
    """What the application stored before this revision: the normalized form, lowercased."""
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def rewrite(convert, candidates):
    """Rewrite the addresses `candidates` (SQL, per column) picks out; stop before changing
    anything if two accounts would share one."""
    bind = op.get_bind()
    changes = {}
    for table, column in COLUMNS:
        rows = bind.execute(
            sa.text(f"SELECT id, {column} FROM {table} WHERE {candidates(column)}")  # noqa: S608
        ).all()
        changes[table] = [
            (id_, new) for id_, old in rows if (new := convert(old)) is not None and new != old
        ]
    changed = dict(changes["users"])
    if changed:
        emails = [
            changed.get(id_, email)
            for id_, email in bind.execute(
                sa.text("SELECT id, lower(email) FROM users WHERE email IS NOT NULL")
            )
        ]
        shared = {email for email, count in Counter(emails).items() if count > 1}
        clashes = sorted(id_ for id_, email in changed.items() if email in shared)
        if clashes:
            raise RuntimeError(
                f"users {', '.join(map(str, clashes))} would share an email address with another "
                "account once domains are in one form; change or clear one of each pair and run "
                "the migration again. Nothing was changed."
            )
    for table, column in COLUMNS:
        for id_, new in changes[table]:
            bind.execute(
                sa.text(f"UPDATE {table} SET {column} = :new WHERE id = :id"),  # noqa: S608
                {"new": new, "id": id_},
            )


def non_ascii(column):
    if op.get_bind().dialect.name == "postgresql":
        return f"octet_length({column}) <> char_length({column})"
    return f"length(CAST({column} AS BLOB)) <> length({column})"


def upgrade():
    rewrite(ascii_domain_form, non_ascii)
    op.add_column("outbox", sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    # Failed messages become pending again: the older sender retries them (without end).
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("failed_at")
    rewrite(unicode_domain_form, lambda column: f"{column} LIKE '%xn--%'")
