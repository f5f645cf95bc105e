"""posts.content: 1-400 characters after trimming, as a CHECK constraint (the lesson's rule)

The model refuses a bad post before any SQL is sent (Post.validate_content); this constraint is
the backstop for writes that bypass the model. Existing rows: surrounding spaces are trimmed
first (what the API itself always stored). A row still blank or over 400 characters cannot
have come through the API; the migration does not guess what its author meant (delete it? cut
it?), it stops with the ids and changes nothing, so the operator decides and runs it again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

MAX_LENGTH = 400  # server/models.py CONTENT_MAX_LENGTH, as it was when this was written
RULE = f"length(trim(content)) >= 1 AND length(content) <= {MAX_LENGTH}"


def upgrade():
    op.execute("UPDATE posts SET content = trim(content) WHERE content <> trim(content)")
    bad = [
        row[0]
        for row in op.get_bind().execute(
            sa.text(f"SELECT id FROM posts WHERE NOT ({RULE}) ORDER BY id")  # noqa: S608 (constants)
        )
    ]
    if bad:
        shown = ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else "")
        raise RuntimeError(
            f"{len(bad)} post(s) are blank or longer than {MAX_LENGTH} characters (ids: {shown}); "  # noqa: S608 (a message)
            "fix or delete them (e.g. DELETE FROM posts WHERE id IN (...)) and run the "
            "upgrade again. Nothing was changed."
        )
    with op.batch_alter_table("posts") as batch:
        batch.create_check_constraint("content_length", RULE)


def downgrade():
    with op.batch_alter_table("posts") as batch:
        batch.drop_constraint("content_length", type_="check")
