"""instances.image_json: the attributes rendering reads, apart

A rendered frame needs a dozen attributes of its instance (rows, columns,
bits, photometric interpretation, rescale, windows); reading and parsing the
instance's whole DICOM JSON (``metadata_json``, a few kilobytes) for them cost
about as much as the index look-up itself. Ingest now keeps them apart
(``dicom_service.dicom.image_tags``); instances stored before are filled here
from their ``metadata_json``.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from dicom_service.dicom.image_tags import image_attributes

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_BATCH = 500
# top-level keys of instances with pixel data (what ingest fills image_json for)
_PIXEL_KEYS = ("7FE00010", "7FE00008", "7FE00009")


def upgrade() -> None:
    op.add_column("instances", sa.Column("image_json", sa.Text(), nullable=True))
    conn = op.get_bind()
    instances = sa.table("instances", sa.column("sop_uid", sa.String),
                         sa.column("metadata_json", sa.Text),
                         sa.column("image_json", sa.Text))
    last = ""
    while True:
        rows = conn.execute(
            sa.select(instances.c.sop_uid, instances.c.metadata_json)
            .where(instances.c.sop_uid > last, instances.c.metadata_json.is_not(None))
            .order_by(instances.c.sop_uid).limit(_BATCH)).all()
        if not rows:
            break
        for sop_uid, metadata in rows:
            try:
                attrs = json.loads(metadata)
            except ValueError:
                continue
            if not isinstance(attrs, dict) or not any(k in attrs for k in _PIXEL_KEYS):
                continue
            image = image_attributes(attrs)
            conn.execute(sa.update(instances).where(instances.c.sop_uid == sop_uid)
                         .values(image_json=json.dumps(image, separators=(",", ":"),
                                                       ensure_ascii=False)))
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_column("image_json")
