"""hash key check: a fingerprint of the key the stored lists are hashed with

One row (id 1) holding HMAC-SHA256(key, "voicecast hash key check v1") in hex, never the key:
voicecast.compliance.suppression.load_store_key refuses a different key (a fresh install's
key next to a restored database would otherwise match none of the stored opt-outs,
opposition lists and refusals). Databases made before this revision get the fingerprint of
the key in use at their next load (trust on first use).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hash_key_check",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_hash_key_check_one_row"),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("hash_key_check")
