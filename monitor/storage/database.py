"""Database engine and sessions for PostgreSQL (production) and SQLite (embedded default)."""

from __future__ import annotations

import pathlib
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from monitor.settings import Settings


def make_engine(settings: Settings) -> Engine:
    """An engine for the configured URL. SQLite: WAL, foreign keys, one writer at a time."""
    url = make_url(settings.database_url)
    # hide_parameters: a database error names its statement, never the values bound to it
    # (patient ids, event bodies), in the exception and so in any log line
    if url.get_backend_name() != "sqlite":
        return create_engine(
            url, pool_pre_ping=True, pool_size=10, max_overflow=10, hide_parameters=True
        )
    if url.database and url.database != ":memory:":
        pathlib.Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")  # accepted means on disk
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock up front: SQLite's stand-in for the patient row lock, and no
        # "database is locked" when a reader later writes.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, class_=Session, expire_on_commit=False)


def insert_for(session: Session) -> Any:
    """The dialect's INSERT, for `ON CONFLICT DO NOTHING` (PostgreSQL and SQLite both have it)."""
    from sqlalchemy.dialects.postgresql import insert as postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"
