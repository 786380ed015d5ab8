"""access generation: a counter bumped by every change that can change access

The one-row ``access_generation`` counts changes to what people may see. The
web layer keeps each person's image scope (``care.access.image_scope``) per
process and uses it only while the counter has not moved since (one cheap
read per request), so a revocation still counts on the very next request.

Database triggers bump the counter in the transaction of the change, so that
no code path can forget to: INSERT, UPDATE or DELETE of ``user_roles``,
``panel_members`` and ``panel_studies``; INSERT, DELETE and an UPDATE of the
columns the rules read of ``users`` (centre, platform administrator,
disabled), ``enrolments`` (centre, consent for care) and ``panels`` (network,
enrolment, lead, state). Other updates (a login's counters, the time of an
enrolment's last instance, a panel's texts) do not. Role expiry needs no
trigger: a kept scope is used only until the earliest expiry of the roles it
was worked out with.

A later migration that rebuilds one of these tables on SQLite (e.g.
``batch_alter_table``) drops its triggers and must create them again;
``tests/panels/test_access_generation.py`` checks every one.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# table -> the columns an UPDATE must touch to count (None: any UPDATE)
WATCHED: dict[str, tuple[str, ...] | None] = {
    "users": ("centre_id", "is_platform_admin", "disabled_at"),
    "user_roles": None,
    "enrolments": ("centre_id", "consent_care"),
    "panels": ("network_id", "enrolment_id", "lead_user_id", "state"),
    "panel_members": None,
    "panel_studies": None,
}
_BUMP = "UPDATE access_generation SET value = value + 1 WHERE id = 1"


def _events(columns: tuple[str, ...] | None) -> dict[str, str]:
    update = "UPDATE" if columns is None else "UPDATE OF " + ", ".join(columns)
    return {"insert": "INSERT", "update": update, "delete": "DELETE"}


def upgrade() -> None:
    op.create_table(
        "access_generation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO access_generation (id, value) VALUES (1, 0)")
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("CREATE FUNCTION bump_access_generation() RETURNS trigger "
                   f"LANGUAGE plpgsql AS $$ BEGIN {_BUMP}; RETURN NULL; END $$")
    for table, columns in WATCHED.items():
        for kind, event in _events(columns).items():
            name = f"access_{table}_{kind}"
            if postgresql:
                op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} "
                           "FOR EACH STATEMENT EXECUTE FUNCTION bump_access_generation()")
            else:
                op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} "
                           f"BEGIN {_BUMP}; END")


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, columns in WATCHED.items():
        for kind in _events(columns):
            name = f"access_{table}_{kind}"
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}" if postgresql
                       else f"DROP TRIGGER IF EXISTS {name}")
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS bump_access_generation()")
    op.drop_table("access_generation")
