"""A PostgreSQL database of a test's own, on the machine's server: created empty, dropped after
(forced, so a connection left open does not keep it), never the shared `test` database."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool


@contextlib.contextmanager
def throwaway_postgres(server_url: str, prefix: str) -> Iterator[URL]:
    """The URL of a new database `{prefix}_<random>` on `server_url`'s server."""
    url = make_url(server_url)
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield url.set(database=name)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
