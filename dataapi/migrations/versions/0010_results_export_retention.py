"""stored results, export limits and idempotency

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("export_max_rows", sa.Integer(), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("rows_key", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=True))
        batch.add_column(sa.Column("total_row_count", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("rows_truncated", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("rows_truncated")
        batch.drop_column("total_row_count")
        batch.drop_column("rows_key")
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("export_max_rows")
