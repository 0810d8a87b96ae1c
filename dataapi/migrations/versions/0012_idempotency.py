"""idempotency keys of execute requests

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_TABLES = ("jobs", "repo_jobs")


def upgrade() -> None:
    # A job created with an Idempotency-Key keeps the key and the fingerprint of its request; one live key per
    # company and user (a key that outlived its window is cleared from its job when the key is used again).
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("idempotency_key", sa.String(length=255), nullable=True))
            batch_op.add_column(sa.Column("request_fingerprint", sa.String(length=64), nullable=True))
            batch_op.create_index(f"ix_{table}_idempotency", ["company_id", "user_id", "idempotency_key"],
                                  unique=True)
    with op.batch_alter_table("jobs", schema=None) as batch_op:  # the caller's jobs of an endpoint, newest first
        batch_op.create_index("ix_jobs_endpoint_user_created", ["endpoint_id", "user_id", "created_at"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_endpoint_user_created")
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_idempotency")
            batch_op.drop_column("request_fingerprint")
            batch_op.drop_column("idempotency_key")
