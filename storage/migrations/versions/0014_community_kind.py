"""community kind: broadcast channels as communities (their referrals convert on time stayed)

Revision ID: 0014
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("communities") as batch:
        batch.add_column(sa.Column("kind", sa.String(20), nullable=False, server_default="group"))


def downgrade() -> None:
    with op.batch_alter_table("communities") as batch:
        batch.drop_column("kind")
