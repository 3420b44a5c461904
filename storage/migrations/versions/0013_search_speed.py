"""search speed: newest-first walks of one user's mail

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24

A search that matches most of a user's mail ranks only the newest matches (see
``search/README.md``); on PostgreSQL those are found by walking the user's messages newest
first and checking each against the stored tsvector, which needs this index; it carries
``blob_key`` so a rare word's few matching documents join the user's copies from the index
alone. It also serves the date-ordered searches with no text on both engines.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index(
        "ix_messages_user_received",
        "messages",
        ["user_id", "received_at", "id", "blob_key"],
        unique=False,
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_messages_user_received", table_name="messages")
