"""SQLAlchemy engines for the metadata store, tuned per backend.

SQLite is the default and several processes (ingest actors, the Serve replica,
the CLI) write the same file, so it runs in WAL mode with a generous busy
timeout, and write transactions take SQLite's write lock up front
(``BEGIN IMMEDIATE``). A deferred transaction that reads before it writes
cannot wait for the lock: SQLite fails it at once with "database is locked",
whatever the busy timeout. Read-only transactions stay deferred so readers never
queue behind writers.
"""

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_BUSY_TIMEOUT_MS = 30_000
_WRITE_OPTION = "twinstream_write"
_POSTGRES_ALIASES = {"postgres", "postgresql"}
_PSYCOPG_DRIVER = "postgresql+psycopg"


def normalize_url(url: str) -> URL:
    """Route the bare PostgreSQL spellings to psycopg 3, the driver we install.

    SQLAlchemy maps ``postgresql://`` to psycopg2 (not installed) and rejects
    ``postgres://`` outright, yet both are what hosting providers hand out.
    """
    parsed = make_url(url)
    if parsed.drivername in _POSTGRES_ALIASES:
        return parsed.set(drivername=_PSYCOPG_DRIVER)
    return parsed


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite files get their directory created."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return create_engine(parsed, pool_pre_ping=True)


def for_writes(engine: Engine) -> Engine:
    """The same engine, but its transactions reserve SQLite's write lock on BEGIN.

    Other backends ignore the option: their row locks already wait.
    """
    return engine.execution_options(**{_WRITE_OPTION: True})


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:" and not url.query.get("uri"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # The driver's own implicit BEGIN is switched off so that
    # _begin_sqlite_transaction decides the locking mode.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(_WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
