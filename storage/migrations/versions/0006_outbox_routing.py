"""outbox routing and dead letters

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("route_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("dead_reason", sa.String(length=20), nullable=True))
    op.create_index(
        "ix_outbox_dead",
        "outbox",
        ["platform", "route_key"],
        unique=False,
        sqlite_where=sa.text("failed_at IS NOT NULL AND delivered_at IS NULL"),
        postgresql_where=sa.text("failed_at IS NOT NULL AND delivered_at IS NULL"),
    )
    # Items still to deliver get their community, so that routing sees them; items that were
    # given up on before this revision become dead letters an admin can retry.
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, payload FROM outbox WHERE delivered_at IS NULL")
    ).fetchall()
    for outbox_id, payload in rows:
        try:
            community = json.loads(payload).get("community")
        except ValueError:
            community = None
        conn.execute(
            sa.text("UPDATE outbox SET route_key = :key WHERE id = :id"),
            {"key": None if community is None else str(community)[:64], "id": outbox_id},
        )
    conn.execute(
        sa.text(
            "UPDATE outbox SET dead_reason = 'refused' "
            "WHERE failed_at IS NOT NULL AND delivered_at IS NULL"
        )
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_dead", table_name="outbox")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("dead_reason")
        batch_op.drop_column("route_key")
