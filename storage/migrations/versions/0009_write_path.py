"""write path: cheaper sends and mailbox counts

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23

"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """A covering index for a mailbox's counts, so logging them after a send reads no rows.

    ``mailbox.counts`` counts a mailbox's messages (total, unread) after every change to it;
    with this index both counts come from the index alone, on SQLite and PostgreSQL.
    """
    op.create_index("ix_messages_counts", "messages", ["user_id", "mailbox_id", "seen"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_messages_counts", table_name="messages")
