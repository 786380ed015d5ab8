"""audit chain head and append-only audit rows

The one-row ``audit_head`` gives out audit ids and holds the chain's last hash
(see ``dicom_service/care/audit.py``). It starts after the rows already
present, which stay unchained.

On SQLite, triggers refuse UPDATE and DELETE of audit rows, an INSERT that
bypasses the chain (no hash, or an id beyond the head), and rewinding or
deleting the head. They guard against mistakes, not against someone with
write access to the file (who can drop them): ``dicom-service audit verify``
detects edits either way. A later migration that rebuilds ``audit_events``
with ``batch_alter_table`` drops these triggers and must create them again.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TRIGGERS = {
    "audit_events_no_update":
        "BEFORE UPDATE ON audit_events BEGIN "
        "SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    "audit_events_no_delete":
        "BEFORE DELETE ON audit_events BEGIN "
        "SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    "audit_events_chained_insert":
        "BEFORE INSERT ON audit_events WHEN NEW.row_hash IS NULL "
        "OR NEW.id IS NULL OR NEW.id > (SELECT last_id FROM audit_head WHERE id = 1) BEGIN "
        "SELECT RAISE(ABORT, 'audit rows are appended through dicom_service.care.audit'); END",
    "audit_head_forward":
        "BEFORE UPDATE ON audit_head WHEN NEW.last_id < OLD.last_id OR NEW.id != OLD.id BEGIN "
        "SELECT RAISE(ABORT, 'the audit head only moves forward'); END",
    "audit_head_no_delete":
        "BEFORE DELETE ON audit_head BEGIN "
        "SELECT RAISE(ABORT, 'the audit head is never deleted'); END",
}


def upgrade() -> None:
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    # rows before 0005 carry no hash (unless 0005 was downgraded and applied
    # again: then the chain goes on from its last row, and the head gets its
    # MAC again with the next append)
    op.execute("INSERT INTO audit_head (id, last_id, last_hash, mac) "
               "SELECT 1, COALESCE(MAX(id), 0), COALESCE((SELECT row_hash FROM audit_events "
               "ORDER BY id DESC LIMIT 1), ''), NULL FROM audit_events")
    if op.get_bind().dialect.name == "sqlite":
        for name, body in _TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in _TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("audit_head")
