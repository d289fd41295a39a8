"""Alembic environment: run with a connection handed over by voicecast, or from a URL.

``voicecast init`` (and every command that opens the database) runs the upgrade itself;
``alembic -x url=sqlite:///var/voicecast.db upgrade head`` works too.
"""

from alembic import context
from sqlalchemy import create_engine

from voicecast.storage.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    engine = create_engine(url)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
