"""dicomweb index: study and series attributes for QIDO-RS

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_STUDY = (
    ("patient_name", 64), ("patient_id", 64), ("patient_birth_date", 8), ("patient_sex", 16),
    ("accession_number", 64), ("study_id", 16), ("study_description", 64),
    ("referring_physician_name", 64),
)
_SERIES = (
    ("series_description", 64), ("series_date", 8), ("series_time", 16),
    ("pps_start_date", 8), ("pps_start_time", 16),
)


def upgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        for name, length in _STUDY:
            batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=True))
    with op.batch_alter_table("series", schema=None) as batch_op:
        for name, length in _SERIES:
            batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("series", schema=None) as batch_op:
        for name, _ in reversed(_SERIES):
            batch_op.drop_column(name)
    with op.batch_alter_table("studies", schema=None) as batch_op:
        for name, _ in reversed(_STUDY):
            batch_op.drop_column(name)
