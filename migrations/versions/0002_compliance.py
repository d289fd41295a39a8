"""compliance: consent ledger, opt-outs, opposition lists, refusals, gate decisions

Adds the compliance stores (numbers of opt-out and opposition lists and refusals are kept as
keyed hashes, see voicecast.compliance.keys), the campaign's compliance declaration, the
gate's latest verdict on each campaign contact, and an index on call_attempts
(number, created_at) for the frequency caps, which count attempts per number across
campaigns.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CAMPAIGN_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[object]], ...] = (
    ("purpose", sa.String(length=20)),
    ("audience", sa.String(length=10)),
    ("sender_name", sa.String(length=200)),
    ("on_behalf_of", sa.String(length=200)),
    ("optout_key", sa.String(length=1)),
    ("callback_number", sa.String(length=16)),
    ("legal_basis", sa.String(length=40)),
    ("hours", sa.String(length=200)),
    ("max_attempts_30d", sa.Integer()),
    ("starts_at", sa.DateTime(timezone=True)),
    ("ends_at", sa.DateTime(timezone=True)),
    ("status_reason", sa.Text()),
)
_CONTACT_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[object]], ...] = (
    ("gate_verdict", sa.String(length=10)),
    ("gate_reason", sa.String(length=40)),
    ("gate_source", sa.String(length=200)),
    ("gate_detail", sa.Text()),
    ("gate_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone_e164", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("proof_ref", sa.String(length=500), nullable=False),
        sa.Column("wording_version", sa.String(length=100), nullable=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("batch", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consents_phone_purpose_recorded",
            ["phone_e164", "purpose", "recorded_at"],
            unique=False,
        )

    op.create_table(
        "opt_outs",
        sa.Column("number_hash", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("number_hash"),
    )

    op.create_table(
        "opposition_lists",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=20), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("list_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("invalid_lines", sa.Integer(), nullable=False),
        sa.Column("source_file", sa.String(length=500), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "opposition_entries",
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("number_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["list_id"], ["opposition_lists.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("list_id", "number_hash"),
        sqlite_with_rowid=False,  # the primary key is the only copy of each row
    )
    with op.batch_alter_table("opposition_entries", schema=None) as batch_op:
        batch_op.create_index("ix_opposition_entries_number_hash", ["number_hash"], unique=False)

    op.create_table(
        "refusals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number_hash", sa.String(length=64), nullable=False),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("refusals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refusals_number_hash"), ["number_hash"], unique=False)

    op.create_table(
        "gate_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("campaign_contact_id", sa.Integer(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verdict", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("rule_source", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempt_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_contact_id"], ["campaign_contacts.id"], ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("gate_decisions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gate_decisions_campaign_contact_id"),
            ["campaign_contact_id"],
            unique=False,
        )

    # Only add_column and create_index: on SQLite, batch mode emits plain ALTER TABLE ADD
    # COLUMN (no table copy).
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        for name, type_ in _CAMPAIGN_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
    with op.batch_alter_table("campaign_contacts", schema=None) as batch_op:
        for name, type_ in _CONTACT_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
    with op.batch_alter_table("call_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_call_attempts_number_created", ["number", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("call_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_call_attempts_number_created")
    # Plain ALTER TABLE DROP COLUMN (SQLite >= 3.35), not batch mode: a batch table copy
    # drops the old table, and with foreign keys on SQLite's DROP TABLE would cascade-delete
    # every campaign contact and attempt.
    for name, _type in reversed(_CONTACT_COLUMNS):
        op.drop_column("campaign_contacts", name)
    for name, _type in reversed(_CAMPAIGN_COLUMNS):
        op.drop_column("campaigns", name)

    with op.batch_alter_table("gate_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gate_decisions_campaign_contact_id"))
    op.drop_table("gate_decisions")
    with op.batch_alter_table("refusals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refusals_number_hash"))
    op.drop_table("refusals")
    with op.batch_alter_table("opposition_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_opposition_entries_number_hash")
    op.drop_table("opposition_entries")
    op.drop_table("opposition_lists")
    op.drop_table("opt_outs")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_index("ix_consents_phone_purpose_recorded")
    op.drop_table("consents")
