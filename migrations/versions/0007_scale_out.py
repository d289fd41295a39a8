"""scale-out: the PBX node and trunk of each attempt, and the shared pacing slots

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("call_attempts") as batch:
        batch.add_column(sa.Column("pbx_node", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("trunk", sa.String(length=40), nullable=True))
    op.create_table(
        "pacing_slots",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("next_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("pacing_slots")
    with op.batch_alter_table("call_attempts") as batch:
        batch.drop_column("trunk")
        batch.drop_column("pbx_node")
