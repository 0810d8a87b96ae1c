"""endpoints' result cache

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every endpoint saved before this revision stays uncached (0) until an admin sets cache_seconds.
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cache_seconds", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "result_cache",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("result_key", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("executed_at", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("result_cache", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_result_cache_company_id"), ["company_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_result_cache_endpoint_id"), ["endpoint_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_result_cache_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("result_cache", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_result_cache_expires_at"))
        batch_op.drop_index(batch_op.f("ix_result_cache_endpoint_id"))
        batch_op.drop_index(batch_op.f("ix_result_cache_company_id"))
    op.drop_table("result_cache")
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("cache_seconds")
