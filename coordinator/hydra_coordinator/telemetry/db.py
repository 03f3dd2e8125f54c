"""The telemetry database: PostgreSQL (``database.url``) or an SQLite file in the state directory.

Both have the same schema, created by the versioned SQL files in ``hydra_coordinator/migrations``
and recorded in ``schema_migrations``. On PostgreSQL the migrations run under
``pg_advisory_lock``, so coordinators starting together apply each one exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import orjson

from ..config import Settings
from ..paths import state_directory
from ..redaction import redact_url

__all__ = [
    "COLUMNS",
    "Database",
    "Migration",
    "PostgresDatabase",
    "SqliteDatabase",
    "copy_data",
    "migrations",
    "open_database",
    "sqlite_row",
]

COLUMNS = (
    "timestamp",
    "request_id",
    "key_id",
    "route",
    "backend",
    "model",
    "confidence",
    "reasons",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "latency_s",
    "ttft_s",
    "status",
    "error_class",
    "task_class",
    "finish_reason",
    "usage_estimated",
    "cache_hit",
    "stream",
    "prompt",
    "endpoint",
)

# pg_advisory_lock key: the first 8 bytes of sha256("hydra-coordinator migrations")
MIGRATION_LOCK = 0x2F1C4D0E7A3B5968


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(kind: str) -> list[Migration]:
    """The migrations shipped for ``kind`` ("postgres" or "sqlite"), in order."""
    folder = resources.files("hydra_coordinator.migrations").joinpath(kind)
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def sqlite_row(line: bytes) -> tuple[Any, ...]:
    """One spooled event (a RequestRecord as a JSON line) as an SQLite telemetry row, in
    ``COLUMNS`` order. Raises ``ValueError`` (or ``KeyError``) for a malformed line."""
    event = orjson.loads(line)
    stamp = datetime.fromtimestamp(float(event["timestamp"]), UTC)
    reasons = orjson.dumps(list(event.get("reasons") or ())).decode()
    return (
        stamp.strftime("%Y-%m-%d %H:%M:%S.%f"),
        str(event["request_id"]),
        event.get("key_id"),
        str(event["route"]),
        str(event["backend"]),
        str(event["model"]),
        event.get("confidence"),
        reasons,
        event.get("prompt_tokens"),
        event.get("completion_tokens"),
        event.get("cost_usd"),
        float(event["latency_s"]),
        event.get("ttft_s"),
        int(event["status"]),
        event.get("error"),
        event.get("task_class"),
        event.get("finish_reason"),
        bool(event.get("usage_estimated", False)),
        bool(event.get("cache_hit", False)),
        bool(event.get("stream", False)),
        event.get("prompt"),
        str(event.get("endpoint") or "chat"),
    )


class Database(Protocol):
    kind: str  # "postgres" or "sqlite"
    where: str  # for messages: the redacted URL or the file

    async def migrate(self) -> list[Migration]: ...
    async def has_telemetry(self) -> bool:
        """Whether the telemetry table exists; creates nothing (not even an SQLite file)."""

    async def ping(self) -> None:
        """Raise when the database cannot be reached (or its file opened) right now."""

    async def insert(self, lines: Sequence[bytes]) -> None:
        """Store spooled events (JSON lines); raises on a malformed line or a broken link."""

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    async def close(self) -> None: ...
    def is_connection_error(self, exc: BaseException) -> bool: ...


def open_database(settings: Settings) -> Database:
    """The configured database; nothing connects until first use."""
    if settings.database.url:
        return PostgresDatabase(
            settings.database.url, settings.database.pool_min, settings.database.pool_max
        )
    return SqliteDatabase(state_directory(settings) / "telemetry.sqlite3")


# --- PostgreSQL ---------------------------------------------------------------------------------

_COLUMN_LIST = ", ".join(COLUMNS)
# Spool lines are JSON objects (a RequestRecord each). A batch is COPY'd as it is into a
# session-local staging table of jsonb, and PostgreSQL takes the fields apart: the coordinator
# does no per-event work beyond escaping backslashes for COPY's text format (one bytes.replace
# per batch), so the cost of telemetry stays on the database's side. One statement then moves
# the batch from the staging table into telemetry (a DELETE ... RETURNING feeding the INSERT):
# it commits by itself, so a batch is three round trips (COPY, its data, the move) and no
# BEGIN/COMMIT. ON CONFLICT makes a replayed batch a no-op.
_PG_STAGING = "CREATE TEMP TABLE IF NOT EXISTS telemetry_incoming (e jsonb)"
_PG_COPY = "COPY telemetry_incoming (e) FROM STDIN"
_PG_EVENT = (
    "timestamp double precision, request_id text, key_id text, route text, backend text, "
    "model text, confidence double precision, reasons jsonb, prompt_tokens integer, "
    "completion_tokens integer, cost_usd double precision, latency_s double precision, "
    "ttft_s double precision, status integer, error text, task_class text, "
    "finish_reason text, usage_estimated boolean, cache_hit boolean, stream boolean, "
    "prompt text, endpoint text"
)
_PG_VALUES = {
    "timestamp": "to_timestamp(r.timestamp)",
    "reasons": "COALESCE(r.reasons, '[]')",
    "error_class": "r.error",
    "usage_estimated": "COALESCE(r.usage_estimated, false)",
    "cache_hit": "COALESCE(r.cache_hit, false)",
    "stream": "COALESCE(r.stream, false)",
    "endpoint": "COALESCE(r.endpoint, 'chat')",
}
_PG_MOVE = (
    "WITH batch AS (DELETE FROM telemetry_incoming RETURNING e) "
    f"INSERT INTO telemetry ({_COLUMN_LIST}) SELECT "
    + ", ".join(_PG_VALUES.get(c, f"r.{c}") for c in COLUMNS)
    + f" FROM batch, jsonb_to_record(batch.e) AS r({_PG_EVENT})"
    + " ON CONFLICT (request_id) DO NOTHING"
)


def copy_data(lines: Sequence[bytes]) -> bytes:
    """Spooled JSON lines as COPY text for ``telemetry_incoming`` (one jsonb column).

    JSON text never holds a raw tab, newline or carriage return (they are escaped inside
    strings), so the only character COPY would misread is the backslash."""
    return b"\n".join(lines).replace(b"\\", b"\\\\") + b"\n"


class PostgresDatabase:
    """Writes go through one dedicated connection (re-made after a failure); reads (stats) use a
    small pool opened on first use."""

    kind = "postgres"

    def __init__(self, url: str, pool_min: int = 1, pool_max: int = 4) -> None:
        self.url = url
        self.where = redact_url(url)
        self.pool_min, self.pool_max = min(pool_min, pool_max), pool_max
        self._writer: Any = None  # psycopg.AsyncConnection
        self._staging = False  # the writer connection has its temp table
        self._pool: Any = None  # psycopg_pool.AsyncConnectionPool
        self._pool_lock = asyncio.Lock()

    async def _connect(self) -> Any:
        import psycopg

        return await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=5)

    async def _writer_connection(self) -> Any:
        if self._writer is None or self._writer.closed:
            self._writer = await self._connect()
            self._staging = False
        return self._writer

    async def migrate(self) -> list[Migration]:
        conn = await self._connect()
        try:
            return await _pg_migrate(conn)
        finally:
            await conn.close()

    async def ping(self) -> None:
        conn = await self._connect()  # a connection of its own: the pool's may be idle
        try:
            await conn.execute("SELECT 1")
        finally:
            await conn.close()

    async def has_telemetry(self) -> bool:
        conn = await self._connect()
        try:
            cursor = await conn.execute("SELECT to_regclass('telemetry') IS NOT NULL")
            row = await cursor.fetchone()
            return bool(row and row[0])
        finally:
            await conn.close()

    async def insert(self, lines: Sequence[bytes]) -> None:
        data = copy_data(lines)
        conn = await self._writer_connection()
        try:
            async with conn.cursor() as cursor:  # autocommit: the move commits the batch
                if not self._staging:
                    await cursor.execute(_PG_STAGING)  # once per connection
                    self._staging = True
                async with cursor.copy(_PG_COPY) as copy:
                    await copy.write(data)
                await cursor.execute(_PG_MOVE)
        except BaseException:
            await self._drop_writer()
            raise

    async def _drop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):  # already broken
                await writer.close()

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        pool = await self._get_pool()
        async with pool.connection(timeout=10) as conn, conn.cursor() as cursor:
            await cursor.execute(sql, params)
            return list(await cursor.fetchall())

    async def _get_pool(self) -> Any:
        async with self._pool_lock:
            if self._pool is None:
                from psycopg_pool import AsyncConnectionPool

                pool = AsyncConnectionPool(
                    self.url,
                    min_size=self.pool_min,
                    max_size=self.pool_max,
                    kwargs={"autocommit": True, "connect_timeout": 5},
                    check=AsyncConnectionPool.check_connection,
                    open=False,
                )
                await pool.open(wait=False)
                self._pool = pool
            return self._pool

    async def close(self) -> None:
        await self._drop_writer()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def is_connection_error(self, exc: BaseException) -> bool:
        import psycopg
        from psycopg_pool import PoolTimeout

        kinds = psycopg.OperationalError | psycopg.InterfaceError | PoolTimeout | OSError
        return isinstance(exc, kinds | TimeoutError)


async def _pg_migrate(conn: Any) -> list[Migration]:
    applied: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor = await conn.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in await cursor.fetchall()}
        for migration in migrations("postgres"):
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
            applied.append(migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied


# --- SQLite -------------------------------------------------------------------------------------

_SQLITE_INSERT = (
    f"INSERT OR IGNORE INTO telemetry ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in COLUMNS)})"
)


class SqliteDatabase:
    """One connection used from worker threads (``asyncio.to_thread``), one call at a time."""

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._conn = conn
        return self._conn

    def _migrate(self) -> list[Migration]:
        with self._lock:
            conn = self._connection()
            applied: list[Migration] = []
            conn.execute("BEGIN IMMEDIATE")  # serializes concurrent migrators
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
                )
                done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
                for migration in migrations("sqlite"):
                    if migration.version in done:
                        continue
                    for statement in _statements(migration.sql):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                        (migration.version, migration.name),
                    )
                    applied.append(migration)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return applied

    async def migrate(self) -> list[Migration]:
        return await asyncio.to_thread(self._migrate)

    def _ping(self) -> None:
        """Open the file afresh, as it is now at its path (the open connection would still
        work on a file deleted or replaced since); when that fails, forget the open connection
        too, so the next use opens the path again."""
        try:
            uri = f"file:{quote(str(self.path))}?mode=rw"  # rw: never creates the file
            probe = sqlite3.connect(uri, uri=True, timeout=5)
            try:
                probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                probe.close()
        except sqlite3.Error as exc:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
            raise sqlite3.OperationalError(f"{self.path}: {exc}") from exc

    async def ping(self) -> None:
        await asyncio.to_thread(self._ping)

    def _has_telemetry(self) -> bool:
        if self._conn is None and not self.path.is_file():
            return False
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'telemetry'"
        return bool(self._fetch(sql, ()))

    async def has_telemetry(self) -> bool:
        return await asyncio.to_thread(self._has_telemetry)

    def _insert(self, lines: Sequence[bytes]) -> None:
        rows = [sqlite_row(line) for line in lines]
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                conn.executemany(_SQLITE_INSERT, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    async def insert(self, lines: Sequence[bytes]) -> None:
        await asyncio.to_thread(self._insert, lines)

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._connection().execute(sql, tuple(params)).fetchall())

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self._fetch, sql, params)

    async def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def is_connection_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError | OSError)


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (ours have no semicolons inside literals)."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]
