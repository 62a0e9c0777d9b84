"""Database schema of the state store, as numbered forward migrations.

Theory of operation
-------------------
The table ``sipxmpp_schema_version`` holds one row per applied migration; the schema version
of a database is its largest ``version``. Opening a store runs, inside one transaction that
also holds the database's write lock (SQLite ``BEGIN IMMEDIATE``; PostgreSQL
``pg_advisory_xact_lock``, so two gateway instances starting together do not both migrate),
every migration newer than that version, in order, and records each. DDL is transactional in
both SQLite and PostgreSQL, so a failed migration leaves the database at its previous version.

A database whose version is *newer* than :data:`LATEST_VERSION` was written by a newer gateway;
the store refuses to open it (:class:`~.errors.SchemaVersionError`) rather than guess.

Migrations are append-only: a released migration is never edited; a change is a new one.
Each carries the DDL for both dialects, because column types differ (REAL/BLOB/STRICT tables
in SQLite, DOUBLE PRECISION/BYTEA in PostgreSQL).

History:

1. ``sipxmpp_subscriptions``: notification dialogs with their SIP dialog state, and the
   indexes behind the per-watcher, per-presentity, per-peer and expiry queries.
2. ``sipxmpp_authorizations`` (RFC 8048 §5.1 presence authorizations) and the index that finds
   subscriptions by SIP dialog identifier (Call-ID and local tag, RFC 3261 §12).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SchemaVersionError

__all__ = [
    "AUTHORIZATION_COLUMNS",
    "AUTHORIZATIONS",
    "LATEST_VERSION",
    "MIGRATIONS",
    "Migration",
    "SUBSCRIPTION_COLUMNS",
    "SUBSCRIPTION_PG_TYPES",
    "SUBSCRIPTIONS",
    "VERSION_TABLE",
    "plan",
]

VERSION_TABLE = "sipxmpp_schema_version"
SUBSCRIPTIONS = "sipxmpp_subscriptions"
AUTHORIZATIONS = "sipxmpp_authorizations"

#: Data columns of a subscription row, in codec order (``version`` is managed by the SQL).
SUBSCRIPTION_COLUMNS: tuple[str, ...] = (
    "id",
    "role",
    "watcher",
    "presentity",
    "event",
    "state",
    "expires_at",
    "peer",
    "last_state",
    "last_notify_at",
    "extra",
    "dialog_call_id",
    "dialog_local_tag",
    "dialog_remote_tag",
    "dialog_local_uri",
    "dialog_remote_uri",
    "dialog_remote_target",
    "dialog_route_set",
    "dialog_local_cseq",
    "dialog_remote_cseq",
    "dialog_secure",
    "dialog_transport",
    "dialog_peer_host",
    "dialog_peer_port",
)

#: PostgreSQL types of :data:`SUBSCRIPTION_COLUMNS`, for the array parameters of batch writes.
SUBSCRIPTION_PG_TYPES: tuple[str, ...] = (
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "float8",
    "text",
    "bytea",
    "float8",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "int8",
    "int8",
    "bool",
    "text",
    "text",
    "int4",
)

#: Data columns of an authorization row, in codec order.
AUTHORIZATION_COLUMNS: tuple[str, ...] = (
    "xmpp_jid",
    "sip_uri",
    "state",
    "pending_out",
    "pending_in",
)

_VERSION_TABLE_SQLITE = f"""
CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at REAL NOT NULL
) STRICT
"""

_VERSION_TABLE_POSTGRES = f"""
CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
)
"""


def version_table_ddl(dialect: str) -> str:
    return _VERSION_TABLE_SQLITE if dialect == "sqlite" else _VERSION_TABLE_POSTGRES


@dataclass(frozen=True, slots=True)
class Migration:
    """One forward schema step."""

    #: The schema version this migration produces (1, 2, ...: consecutive).
    version: int
    #: What it changes, recorded in the version table.
    description: str
    #: Statements for SQLite, run in order.
    sqlite: tuple[str, ...]
    #: Statements for PostgreSQL, run in order.
    postgres: tuple[str, ...]

    def statements(self, dialect: str) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgres


_SUBSCRIPTION_INDEXES = tuple(
    f"CREATE INDEX {SUBSCRIPTIONS}_{column} ON {SUBSCRIPTIONS} ({column})"
    for column in ("watcher", "presentity", "peer", "expires_at")
)

_V1_SQLITE = (
    f"""
    CREATE TABLE {SUBSCRIPTIONS} (
        id TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('notifier', 'subscriber')),
        watcher TEXT NOT NULL,
        presentity TEXT NOT NULL,
        event TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'terminated')),
        expires_at REAL NOT NULL,
        peer TEXT NOT NULL,
        last_state BLOB,
        last_notify_at REAL,
        extra TEXT NOT NULL,
        dialog_call_id TEXT,
        dialog_local_tag TEXT,
        dialog_remote_tag TEXT,
        dialog_local_uri TEXT,
        dialog_remote_uri TEXT,
        dialog_remote_target TEXT,
        dialog_route_set TEXT,
        dialog_local_cseq INTEGER,
        dialog_remote_cseq INTEGER,
        dialog_secure INTEGER CHECK (dialog_secure IN (0, 1)),
        dialog_transport TEXT,
        dialog_peer_host TEXT,
        dialog_peer_port INTEGER,
        version INTEGER NOT NULL CHECK (version >= 1)
    ) STRICT
    """,
    *_SUBSCRIPTION_INDEXES,
)

_V1_POSTGRES = (
    # COLLATE "C": byte order, so keyset pagination over ids is cheap and locale-independent.
    f"""
    CREATE TABLE {SUBSCRIPTIONS} (
        id TEXT COLLATE "C" PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('notifier', 'subscriber')),
        watcher TEXT NOT NULL,
        presentity TEXT NOT NULL,
        event TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'terminated')),
        expires_at DOUBLE PRECISION NOT NULL,
        peer TEXT NOT NULL,
        last_state BYTEA,
        last_notify_at DOUBLE PRECISION,
        extra TEXT NOT NULL,
        dialog_call_id TEXT,
        dialog_local_tag TEXT,
        dialog_remote_tag TEXT,
        dialog_local_uri TEXT,
        dialog_remote_uri TEXT,
        dialog_remote_target TEXT,
        dialog_route_set TEXT,
        dialog_local_cseq BIGINT,
        dialog_remote_cseq BIGINT,
        dialog_secure BOOLEAN,
        dialog_transport TEXT,
        dialog_peer_host TEXT,
        dialog_peer_port INTEGER,
        version BIGINT NOT NULL CHECK (version >= 1)
    )
    """,
    *_SUBSCRIPTION_INDEXES,
)

_DIALOG_INDEX = (
    f"CREATE INDEX {SUBSCRIPTIONS}_dialog ON {SUBSCRIPTIONS} (dialog_call_id, dialog_local_tag)"
)

_V2_SQLITE = (
    f"""
    CREATE TABLE {AUTHORIZATIONS} (
        xmpp_jid TEXT NOT NULL,
        sip_uri TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('none', 'to', 'from', 'both')),
        pending_out INTEGER NOT NULL CHECK (pending_out IN (0, 1)),
        pending_in INTEGER NOT NULL CHECK (pending_in IN (0, 1)),
        version INTEGER NOT NULL CHECK (version >= 1),
        PRIMARY KEY (xmpp_jid, sip_uri)
    ) STRICT
    """,
    f"CREATE INDEX {AUTHORIZATIONS}_sip_uri ON {AUTHORIZATIONS} (sip_uri)",
    _DIALOG_INDEX,
)

_V2_POSTGRES = (
    f"""
    CREATE TABLE {AUTHORIZATIONS} (
        xmpp_jid TEXT COLLATE "C" NOT NULL,
        sip_uri TEXT COLLATE "C" NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('none', 'to', 'from', 'both')),
        pending_out BOOLEAN NOT NULL,
        pending_in BOOLEAN NOT NULL,
        version BIGINT NOT NULL CHECK (version >= 1),
        PRIMARY KEY (xmpp_jid, sip_uri)
    )
    """,
    f"CREATE INDEX {AUTHORIZATIONS}_sip_uri ON {AUTHORIZATIONS} (sip_uri)",
    _DIALOG_INDEX,
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "subscriptions with dialog state", _V1_SQLITE, _V1_POSTGRES),
    Migration(2, "presence authorizations; dialog lookup index", _V2_SQLITE, _V2_POSTGRES),
)

LATEST_VERSION = MIGRATIONS[-1].version


def plan(current: int, target: int = LATEST_VERSION) -> tuple[Migration, ...]:
    """The migrations that take a database from ``current`` to ``target``, in order.

    Raises :class:`SchemaVersionError` when ``current`` is newer than this code knows.
    """
    if current > LATEST_VERSION:
        raise SchemaVersionError(
            f"database schema version {current} is newer than this gateway's "
            f"{LATEST_VERSION}; upgrade the gateway"
        )
    if not 0 <= target <= LATEST_VERSION:
        raise ValueError(f"target schema version {target} is not 0..{LATEST_VERSION}")
    return tuple(m for m in MIGRATIONS if current < m.version <= target)
