"""gateway: accounts, api keys, mailbox folders

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change: the gateway's accounts fit the schema 0001 made.

    API keys are ``auth_tokens`` rows of kind ``api_key`` (hashed, no expiry, revocable like a
    session token), and user folders are ``mailboxes`` rows without a role. The revision stays
    so the chain is the one every engineer's migration was numbered against.
    """


def downgrade() -> None:
    """Nothing to undo (see :func:`upgrade`)."""
