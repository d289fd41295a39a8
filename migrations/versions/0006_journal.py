"""proof journal: hash-chained, append-only entries and the chain head, guarded by triggers

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
GENESIS = "0" * 64

SQLITE_TRIGGERS = [
    # entries: never updated; deleted only up to the purge anchor (retention)
    """CREATE TRIGGER journal_entries_no_update BEFORE UPDATE ON journal_entries
    BEGIN SELECT RAISE(ABORT, 'journal_entries is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER journal_entries_no_delete BEFORE DELETE ON journal_entries
    WHEN OLD.seq > (SELECT anchor_seq FROM journal_head WHERE id = 1)
    BEGIN SELECT RAISE(ABORT, 'journal_entries is append-only: DELETE refused'); END""",
    """CREATE TRIGGER journal_head_no_delete BEFORE DELETE ON journal_head
    BEGIN SELECT RAISE(ABORT, 'journal_head cannot be deleted'); END""",
    """CREATE TRIGGER journal_head_forward BEFORE UPDATE ON journal_head
    WHEN NEW.seq < OLD.seq OR NEW.anchor_seq < OLD.anchor_seq OR NEW.anchor_seq > NEW.seq
      OR NEW.id <> OLD.id
    BEGIN SELECT RAISE(ABORT, 'journal_head only moves forward'); END""",
]

POSTGRES_TRIGGERS = [
    """CREATE FUNCTION journal_entries_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP IN ('UPDATE', 'TRUNCATE') THEN
        RAISE EXCEPTION 'journal_entries is append-only: % refused', TG_OP;
      END IF;
      IF OLD.seq > (SELECT anchor_seq FROM journal_head WHERE id = 1) THEN
        RAISE EXCEPTION 'journal_entries is append-only: DELETE refused';
      END IF;
      RETURN OLD;
    END $$""",
    """CREATE TRIGGER journal_entries_guard BEFORE UPDATE OR DELETE ON journal_entries
    FOR EACH ROW EXECUTE FUNCTION journal_entries_guard()""",
    """CREATE FUNCTION journal_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'journal_head cannot be deleted';
      END IF;
      IF NEW.seq < OLD.seq OR NEW.anchor_seq < OLD.anchor_seq OR NEW.anchor_seq > NEW.seq
         OR NEW.id <> OLD.id THEN
        RAISE EXCEPTION 'journal_head only moves forward';
      END IF;
      RETURN NEW;
    END $$""",
    """CREATE TRIGGER journal_head_guard BEFORE UPDATE OR DELETE ON journal_head
    FOR EACH ROW EXECUTE FUNCTION journal_head_guard()""",
    """CREATE TRIGGER journal_no_truncate BEFORE TRUNCATE ON journal_entries
    FOR EACH STATEMENT EXECUTE FUNCTION journal_entries_guard()""",
]


def upgrade() -> None:
    op.create_table(
        "journal_entries",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_journal_subject", "journal_entries", ["subject"])
    op.create_index("ix_journal_at", "journal_entries", ["at"])
    op.create_table(
        "journal_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("anchor_seq", sa.Integer(), nullable=False),
        sa.Column("anchor_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_journal_head_single"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute(
        sa.text(
            "INSERT INTO journal_head (id, seq, hash, anchor_seq, anchor_hash) "
            "VALUES (1, 0, :g, 0, :g)"
        ).bindparams(g=GENESIS)
    )
    triggers = POSTGRES_TRIGGERS if op.get_bind().dialect.name == "postgresql" else SQLITE_TRIGGERS
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE journal_entries CASCADE")
        op.execute("DROP TABLE journal_head CASCADE")
        op.execute("DROP FUNCTION journal_entries_guard()")
        op.execute("DROP FUNCTION journal_head_guard()")
        return
    op.drop_table("journal_entries")
    op.drop_table("journal_head")
