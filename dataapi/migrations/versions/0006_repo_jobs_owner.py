"""repo jobs: the owning user and API key

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Jobs created before this revision keep no owner: only a holder of jobs:all_clients sees them. Their
    # created_by was a header the caller chose, so it is no evidence of who they belong to.
    with op.batch_alter_table("repo_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("api_key_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_repo_jobs_user_id_users", "users", ["user_id"], ["id"])
        batch_op.create_foreign_key("fk_repo_jobs_api_key_id_api_keys", "api_keys", ["api_key_id"], ["id"])
        batch_op.create_index(batch_op.f("ix_repo_jobs_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("repo_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_repo_jobs_user_id"))
        batch_op.drop_constraint("fk_repo_jobs_api_key_id_api_keys", type_="foreignkey")
        batch_op.drop_constraint("fk_repo_jobs_user_id_users", type_="foreignkey")
        batch_op.drop_column("api_key_id")
        batch_op.drop_column("user_id")
