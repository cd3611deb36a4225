"""Alembic environment, async-aware.

`medlegal` passes an open connection in `config.attributes["connection"]` (so migrations run inside the
caller's event loop and lock); the plain `alembic` command gets its URL from MEDLEGAL_DATABASE_URL.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from db.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    from bot.settings import Settings
    from db.engine import make_engine

    url = config.get_main_option("sqlalchemy.url") or Settings().database_url
    engine = make_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_configure)
        await connection.commit()
    await engine.dispose()


def run() -> None:
    if context.is_offline_mode():
        from bot.settings import Settings

        context.configure(url=Settings().database_url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
    else:
        asyncio.run(_run_async())


run()
