"""rewards and balances: grant epochs, ready notices, coupon waits

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("epoch", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("ready_told_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("waiting_since", sa.BigInteger(), nullable=True))
        batch_op.create_index(
            "ix_grants_ready_untold",
            ["status", "ready_told_at", "available_at"],
            unique=False,
        )
        batch_op.create_index("ix_grants_referral", ["referral_id"], unique=False)
        batch_op.create_index(
            "ix_grants_pool_waiting",
            ["program_id", "waiting_since"],
            unique=False,
            sqlite_where=sa.text("waiting_since IS NOT NULL"),
            postgresql_where=sa.text("waiting_since IS NOT NULL"),
        )
    # Grants made before this revision: a reward already available was announced when it was
    # granted; only those still in their holding period get a "ready" notice later. Applied
    # roles start at epoch 1 (their first application).
    now = int(time.time())
    told = sa.text("UPDATE grants SET ready_told_at = created_at WHERE available_at <= :now")
    op.execute(told.bindparams(now=now))
    op.execute(sa.text("UPDATE grants SET epoch = 1 WHERE kind = 'role' AND status = 'redeemed'"))


def downgrade() -> None:
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_index("ix_grants_pool_waiting")
        batch_op.drop_index("ix_grants_referral")
        batch_op.drop_index("ix_grants_ready_untold")
        batch_op.drop_column("waiting_since")
        batch_op.drop_column("ready_told_at")
        batch_op.drop_column("epoch")
