"""input and words: look up a pasted personal link by its url

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_referral_links_url", "referral_links", ["url"])


def downgrade() -> None:
    op.drop_index("ix_referral_links_url", table_name="referral_links")
