"""one current webhook secret per company

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Two first deliveries at once must not each create a "current" secret and sign with it.
    op.create_index("uq_webhook_secrets_current", "webhook_secrets", ["company_id"], unique=True,
                    sqlite_where=sa.text("retired_at IS NULL"), postgresql_where=sa.text("retired_at IS NULL"))


def downgrade() -> None:
    op.drop_index("uq_webhook_secrets_current", table_name="webhook_secrets")
