"""Alembic environment: runs on the connection handed in by storage.database, or on a URL."""

from alembic import context
from sqlalchemy import create_engine

from storage.tables import metadata

config = context.config


def run(connection):
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs go through copies
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:  # `alembic` command line, for writing new revisions: -x url=sqlite:///path
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///data/alembic-dev.db")
    with create_engine(url).connect() as conn:
        run(conn)
        conn.commit()
