"""call flows: scenarios, text messages, delivery target, per-node results, recordings,
inbound call-back calls

- campaigns: ``scenario`` (the validated scenario document, JSON; NULL = the default
  message-then-opt-out flow), ``deliver_to`` (``both`` | ``humans`` | ``machines``),
  ``message_text`` + ``tts_voice`` + ``tts_speed`` (a text message spoken by local TTS, the
  "SMS vocal"), and ``message_id`` becomes optional (a text campaign has no audio file).
- call_attempts: ``steps`` (each scenario node's result, JSON list) and ``result`` (the
  scenario's ``set_result`` value).
- recordings: the callee's replies captured by ``record`` nodes, with their deletion date.
- inbound_calls: calls to a campaign caller ID (the call-back opt-out line).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("scenario", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("deliver_to", sa.String(length=10), nullable=False, server_default="both")
        )
        batch.add_column(sa.Column("message_text", sa.Text(), nullable=True))
        batch.add_column(sa.Column("tts_voice", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("tts_speed", sa.Integer(), nullable=True))
        batch.alter_column("message_id", existing_type=sa.Integer(), nullable=True)
    with op.batch_alter_table("call_attempts") as batch:
        batch.add_column(sa.Column("steps", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("result", sa.String(length=60), nullable=True))
    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.String(length=36), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(length=40), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delete_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["attempt_id"], ["call_attempts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_recordings_delete_after", "recordings", ["delete_after"])
    op.create_table(
        "inbound_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("called", sa.String(length=16), nullable=False),
        sa.Column("caller", sa.String(length=16), nullable=True),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=30), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("inbound_calls")
    op.drop_index("ix_recordings_delete_after", table_name="recordings")
    op.drop_table("recordings")
    with op.batch_alter_table("call_attempts") as batch:
        batch.drop_column("result")
        batch.drop_column("steps")
    with op.batch_alter_table("campaigns") as batch:
        batch.alter_column("message_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("tts_speed")
        batch.drop_column("tts_voice")
        batch.drop_column("message_text")
        batch.drop_column("deliver_to")
        batch.drop_column("scenario")
