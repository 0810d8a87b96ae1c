"""expiry of results and jobs

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# What the prune schedule selects by (dataapi/retention.py): finished jobs and deliveries by when they ended,
# refresh tokens by when they expire.
INDEXES = (("jobs", "completed_at"), ("repo_jobs", "completed_at"), ("callback_deliveries", "finished_at"),
           ("refresh_tokens", "expires_at"))


def upgrade() -> None:
    for table in ("jobs", "repo_jobs"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True))
    for table, column in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=False)


def downgrade() -> None:
    for table, column in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_{column}"))
    for table in ("repo_jobs", "jobs"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("expired_at")
