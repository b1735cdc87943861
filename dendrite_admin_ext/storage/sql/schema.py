"""The SQL schema shared by the SQLite and PostgreSQL backends, as versioned migrations.

The three ``userapi_*`` tables are Dendrite's (same names, columns and meaning), so a
homeserver sharing the database sees the accounts, devices and profiles written here
and the other way round.  Every other table is ours and prefixed ``dendrite_admin_``.
The README's "integration contract" section documents them.

Two ways to migrate (SPEC 8).  By default the package owns the whole schema and every
statement runs.  Beside Dendrite (``database.shared_with: dendrite``) Dendrite owns its
tables: a migration's :attr:`Migration.owned` statements (anything that creates, alters,
indexes or constrains one of Dendrite's tables, or points a foreign key at one) are
skipped, and its :attr:`Migration.shared` statements (ours again, without what touches
Dendrite's) run instead.

A migration is a list of statements; the few dialect differences are spelled as
``{fragments}`` filled in by :meth:`Dialect.sql` (never with values: those always
travel as query parameters).  Migrations are append-only: never edit a released one,
add the next version instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["DENDRITE_TABLES", "MIGRATIONS", "POSTGRES", "SQLITE", "Dialect", "Migration"]


@dataclass(frozen=True)
class Dialect:
    """The few differences between the two SQL dialects, as named fragments.

    Shared SQL text (DDL and queries alike) writes ``{name}`` where a fragment goes;
    :meth:`sql` substitutes them.  Fragments are fixed SQL words, never values.
    """

    name: str
    fragments: Mapping[str, str]
    # Run first inside the migration transaction so concurrent workers migrate one at
    # a time (SQLite: BEGIN IMMEDIATE already does this).
    migration_lock: str | None = None
    _cache: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def sql(self, text: str) -> str:
        """The statement for this driver: fragments filled in, and ``%s``
        placeholders turned into ``?`` for sqlite3."""
        out = self._cache.get(text)
        if out is None:
            out = text
            if "{" in out:
                for key, value in self.fragments.items():
                    out = out.replace("{" + key + "}", value)
            if self.name == "sqlite":
                out = out.replace("%s", "?")
            self._cache[text] = out
        return out


POSTGRES = Dialect(
    name="postgres",
    fragments={
        "serial_pk": "BIGSERIAL PRIMARY KEY",
        # User IDs are compared and ordered byte-wise like the reference backend does,
        # whatever the database's default collation.
        "binary": 'COLLATE "C"',
        # Dendrite allocates device session ids from this sequence.
        "session_id_default": "DEFAULT nextval('userapi_device_session_id_seq')",
        "next_session_id": "nextval('userapi_device_session_id_seq')",
        "greatest": "GREATEST",
        "for_update": "FOR UPDATE",
        # Housekeeping deletes pass over rows another transaction holds (it is deleting
        # or consuming them anyway) instead of waiting, or deadlocking, on them.
        "skip_locked": "FOR UPDATE SKIP LOCKED",
        # The tables visible on this connection (start-up checks; no DDL).
        "table_catalog": "(SELECT table_name AS name FROM information_schema.tables"
                         " WHERE table_schema = current_schema())",
        "index_catalog": "(SELECT indexname AS name FROM pg_indexes"
                         " WHERE schemaname = current_schema())",
        # Dendrite numbers a new device's session the same way on PostgreSQL.
        "dendrite_session_id": "nextval('userapi_device_session_id_seq')",
    },
    # Any constant shared by every worker of this package.
    migration_lock="SELECT pg_advisory_xact_lock(7234017650394541)",
)

SQLITE = Dialect(
    name="sqlite",
    fragments={
        "serial_pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "binary": "COLLATE BINARY",
        "session_id_default": "",
        "next_session_id": "(SELECT COALESCE(MAX(session_id), 0) + 1 FROM userapi_devices)",
        # The two-argument MAX() is SQLite's GREATEST().
        "greatest": "MAX",
        # No row locks in SQLite; BEGIN IMMEDIATE already serialises writers.
        "for_update": "",
        "skip_locked": "",
        "table_catalog": "(SELECT name FROM sqlite_master WHERE type = 'table')",
        "index_catalog": "(SELECT name FROM sqlite_master WHERE type = 'index')",
        # Dendrite's SQLite storage numbers a new device's session as the number of
        # devices plus one (devices_table.go InsertDevice).
        "dendrite_session_id": "(SELECT COUNT(access_token) + 1 FROM userapi_devices)",
    },
)


@dataclass(frozen=True)
class Migration:
    """One schema version.

    ``statements`` create and change the package's own tables and run in both modes.
    Anything that touches one of Dendrite's tables (creating it, an index or a
    constraint on it, a foreign key into it: a table of ours with such a key goes here
    whole) belongs in ``owned`` / ``owned_only``: run only when the package owns the
    schema, never beside Dendrite.  ``shared`` runs only beside Dendrite, in place of
    ``owned`` (e.g. the same table of ours without the foreign key).  A feature that
    uses a table of Dendrite's that Dendrite may not have yet (created ``IF NOT
    EXISTS`` when the package owns the schema) puts that table in ``owned`` and reads
    Dendrite's own beside it; the tables it expects of Dendrite are checked at start-up
    (:data:`DENDRITE_TABLES`).
    """

    version: int
    description: str
    statements: tuple[str, ...]
    # Statements of ours only one dialect needs, by dialect name.
    only: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Statements on Dendrite's tables: only when the package owns the schema.  They run
    # first, so ``statements`` may refer to them.
    owned: tuple[str, ...] = ()
    owned_only: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Only beside Dendrite (database.shared_with), in place of ``owned``.
    shared: tuple[str, ...] = ()

    def for_dialect(self, dialect: Dialect, *, shared: bool = False) -> list[str]:
        if shared:
            return [*self.only.get(dialect.name, ()), *self.shared, *self.statements]
        return [*self.owned_only.get(dialect.name, ()), *self.only.get(dialect.name, ()),
                *self.owned, *self.statements]


# The tables of Dendrite's the package reads and writes beside Dendrite: all must exist
# before the package creates anything there (Dendrite creates them on its first start).
DENDRITE_TABLES = ("userapi_accounts", "userapi_devices", "userapi_profiles",
                   "userapi_account_datas",
                   # Dendrite >= 0.13; the registration tokens feature uses it as is.
                   "userapi_registration_tokens")

# An index the package puts on Dendrite's accounts table when it owns the schema: found
# beside Dendrite, it means the package created or altered Dendrite's tables before.
OWNED_MARKER_INDEX = "dendrite_admin_accounts_lower_idx"

SCHEMA_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS dendrite_admin_schema_version (
    version INTEGER NOT NULL PRIMARY KEY,
    description TEXT NOT NULL,
    applied_ts BIGINT NOT NULL
)"""

_V1 = Migration(
    1,
    "Dendrite's user tables and the admin API's own tables",
    statements=(
        # -- ours ------------------------------------------------------------------------
        # Shared-secret registration's user_type ("bot", "support", …); Dendrite has no
        # column for it and its tables keep their meaning.
        """CREATE TABLE IF NOT EXISTS dendrite_admin_user_types (
            localpart TEXT NOT NULL,
            server_name TEXT NOT NULL,
            user_type TEXT NOT NULL,
            PRIMARY KEY (localpart, server_name)
        )""",
        """CREATE TABLE IF NOT EXISTS dendrite_admin_rooms (
            room_nid {serial_pk},
            room_id TEXT NOT NULL UNIQUE,
            room_version TEXT NOT NULL,
            creator TEXT NOT NULL,
            depth BIGINT NOT NULL,
            latest_event_id TEXT,
            created_ts BIGINT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS dendrite_admin_events (
            stream_ordering {serial_pk},
            event_id TEXT NOT NULL UNIQUE,
            room_id TEXT NOT NULL,
            sender TEXT NOT NULL,
            type TEXT NOT NULL,
            state_key TEXT,
            content TEXT NOT NULL,
            origin_server_ts BIGINT NOT NULL,
            depth BIGINT NOT NULL,
            event_json TEXT NOT NULL
        )""",
        """CREATE INDEX IF NOT EXISTS dendrite_admin_events_room_idx
            ON dendrite_admin_events (room_id, stream_ordering)""",
        """CREATE TABLE IF NOT EXISTS dendrite_admin_current_state (
            room_id TEXT NOT NULL,
            type TEXT NOT NULL,
            state_key TEXT NOT NULL,
            event_id TEXT NOT NULL,
            PRIMARY KEY (room_id, type, state_key)
        )""",
        # The current membership of every user in every room, denormalised from
        # current_state for the two hot queries: a room's local joined members in
        # user-ID order (evacuation paging) and a user's rooms.
        """CREATE TABLE IF NOT EXISTS dendrite_admin_memberships (
            room_id TEXT NOT NULL,
            user_id TEXT {binary} NOT NULL,
            server_name TEXT NOT NULL,
            membership TEXT NOT NULL,
            display_name TEXT,
            avatar_url TEXT,
            event_id TEXT NOT NULL,
            PRIMARY KEY (room_id, user_id)
        )""",
        """CREATE INDEX IF NOT EXISTS dendrite_admin_memberships_joined_idx
            ON dendrite_admin_memberships (room_id, server_name, user_id)
            WHERE membership = 'join'""",
        """CREATE INDEX IF NOT EXISTS dendrite_admin_memberships_user_idx
            ON dendrite_admin_memberships (user_id, membership)""",
        """CREATE TABLE IF NOT EXISTS dendrite_admin_account_data (
            user_id TEXT NOT NULL,
            room_id TEXT NOT NULL,
            type TEXT NOT NULL,
            content TEXT NOT NULL,
            PRIMARY KEY (user_id, room_id, type)
        )""",
        """CREATE TABLE IF NOT EXISTS dendrite_admin_server_notice_rooms (
            user_id TEXT NOT NULL PRIMARY KEY,
            room_id TEXT NOT NULL
        )""",
        # Shared-secret registration nonces: single use, shared by every worker.  ``id``
        # orders them by age so trimming to the bound is one indexed range delete.
        """CREATE TABLE IF NOT EXISTS dendrite_admin_nonces (
            id {serial_pk},
            nonce TEXT NOT NULL UNIQUE,
            expires_ts BIGINT NOT NULL
        )""",
        """CREATE INDEX IF NOT EXISTS dendrite_admin_nonces_expiry_idx
            ON dendrite_admin_nonces (expires_ts)""",
        """CREATE TABLE IF NOT EXISTS dendrite_admin_notice_txns (
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            txn_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            ts BIGINT NOT NULL,
            PRIMARY KEY (user_id, device_id, txn_id)
        )""",
        """CREATE INDEX IF NOT EXISTS dendrite_admin_notice_txns_ts_idx
            ON dendrite_admin_notice_txns (ts)""",
        """CREATE TABLE IF NOT EXISTS dendrite_admin_audit (
            id {serial_pk},
            ts BIGINT NOT NULL,
            request_id TEXT NOT NULL,
            requester TEXT,
            action TEXT NOT NULL,
            target TEXT,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL
        )""",
        # The retention purge deletes by age.
        """CREATE INDEX IF NOT EXISTS dendrite_admin_audit_ts_idx
            ON dendrite_admin_audit (ts)""",
    ),
    owned=(
        # -- Dendrite's tables (CREATE ... IF NOT EXISTS: a Dendrite that shares the
        #    database may have created them already) ---------------------------------
        """CREATE TABLE IF NOT EXISTS userapi_accounts (
            localpart TEXT NOT NULL,
            server_name TEXT NOT NULL,
            created_ts BIGINT NOT NULL,
            password_hash TEXT,
            appservice_id TEXT,
            is_deactivated BOOLEAN DEFAULT FALSE,
            account_type SMALLINT NOT NULL
        )""",
        """CREATE UNIQUE INDEX IF NOT EXISTS userapi_accounts_idx
            ON userapi_accounts (localpart, server_name)""",
        # Registration checks names case-insensitively.
        """CREATE INDEX IF NOT EXISTS dendrite_admin_accounts_lower_idx
            ON userapi_accounts (lower(localpart), server_name)""",
        """CREATE TABLE IF NOT EXISTS userapi_devices (
            access_token TEXT NOT NULL PRIMARY KEY,
            session_id BIGINT NOT NULL {session_id_default},
            device_id TEXT NOT NULL,
            localpart TEXT NOT NULL,
            server_name TEXT NOT NULL,
            created_ts BIGINT NOT NULL,
            display_name TEXT,
            last_seen_ts BIGINT NOT NULL,
            ip TEXT,
            user_agent TEXT
        )""",
        """CREATE UNIQUE INDEX IF NOT EXISTS userapi_device_localpart_id_idx
            ON userapi_devices (localpart, server_name, device_id)""",
        """CREATE TABLE IF NOT EXISTS userapi_profiles (
            localpart TEXT NOT NULL,
            server_name TEXT NOT NULL,
            display_name TEXT,
            avatar_url TEXT
        )""",
        """CREATE UNIQUE INDEX IF NOT EXISTS userapi_profiles_idx
            ON userapi_profiles (localpart, server_name)""",
        # Every distinct (ip, user agent) a device was seen with, for whois.  Deleting
        # the device (logout, by us or by the homeserver) deletes its connections.
        """CREATE TABLE IF NOT EXISTS dendrite_admin_device_connections (
            localpart TEXT NOT NULL,
            server_name TEXT NOT NULL,
            device_id TEXT NOT NULL,
            ip TEXT NOT NULL,
            user_agent TEXT NOT NULL,
            last_seen_ts BIGINT NOT NULL,
            PRIMARY KEY (localpart, server_name, device_id, ip, user_agent),
            FOREIGN KEY (localpart, server_name, device_id)
                REFERENCES userapi_devices (localpart, server_name, device_id)
                ON DELETE CASCADE
        )""",
    ),
    owned_only={"postgres": (
        "CREATE SEQUENCE IF NOT EXISTS userapi_device_session_id_seq START 1",
    )},
    shared=(
        # Beside Dendrite: no foreign key into Dendrite's devices table.  Sightings of a
        # device Dendrite deleted are left behind and never read: whois joins on the
        # device and ignores sightings older than the device's creation (a device ID
        # logged in again is a new device).
        """CREATE TABLE IF NOT EXISTS dendrite_admin_device_connections (
            localpart TEXT NOT NULL,
            server_name TEXT NOT NULL,
            device_id TEXT NOT NULL,
            ip TEXT NOT NULL,
            user_agent TEXT NOT NULL,
            last_seen_ts BIGINT NOT NULL,
            PRIMARY KEY (localpart, server_name, device_id, ip, user_agent)
        )""",
    ),
)

_V2 = Migration(
    2,
    "Account state Dendrite has no column for: erased, locked, suspended",
    statements=(
        # One row per account that has any of these set; absent = all false.  Kept
        # apart from userapi_accounts so that Dendrite's table keeps its own layout.
        # Written by user administration (erase on deactivation, SPEC 9) and account
        # moderation (lock, suspend: SPEC 10).
        """CREATE TABLE IF NOT EXISTS dendrite_admin_account_state (
            localpart TEXT NOT NULL,
            server_name TEXT NOT NULL,
            erased BOOLEAN NOT NULL DEFAULT FALSE,
            locked BOOLEAN NOT NULL DEFAULT FALSE,
            suspended BOOLEAN NOT NULL DEFAULT FALSE,
            PRIMARY KEY (localpart, server_name)
        )""",
    ),
)

_V3 = Migration(
    3,
    "Registration tokens: Dendrite's table, and the sessions holding a use of one",
    # Dendrite's own table, exactly as Dendrite declares it (identical for PostgreSQL
    # and SQLite), so that with a shared database Dendrite's token endpoints and ours
    # use one store: created only when the package owns the schema; beside Dendrite,
    # Dendrite's own is used as it is.  Dendrite writes 0 into pending/completed; the
    # queries still read NULL as 0.
    owned=(
        """CREATE TABLE IF NOT EXISTS userapi_registration_tokens (
            token TEXT PRIMARY KEY,
            pending BIGINT,
            completed BIGINT,
            uses_allowed BIGINT,
            expiry_time BIGINT
        )""",
    ),
    statements=(
        # Ours: which registration session holds a use of which token (pending), so a
        # session counts once, cannot switch tokens, and gives its use back when it
        # completes or ends.  Shared by every worker, like the host's UIA sessions.
        """CREATE TABLE IF NOT EXISTS dendrite_admin_registration_token_sessions (
            session_id TEXT NOT NULL PRIMARY KEY,
            token TEXT NOT NULL,
            created_ts BIGINT NOT NULL
        )""",
        """CREATE INDEX IF NOT EXISTS dendrite_admin_registration_token_sessions_ts_idx
            ON dendrite_admin_registration_token_sessions (created_ts)""",
    ),
)

_V4 = Migration(
    4,
    "User administration: indexes for keyset pages of the user list",
    statements=(),
    # Synapse's user list (SPEC 9) pages by (sort key, localpart) within one server
    # name, compared byte-wise; each index below serves one order_by (see
    # storage/sql/users.py SORT_KEYS: the expressions must stay identical).  They are
    # on Dendrite's tables, so only when the package owns the schema: beside Dendrite
    # none is created (SPEC 8) and deep pages there are scans.
    owned=(
        """CREATE INDEX IF NOT EXISTS dendrite_admin_accounts_name_idx
            ON userapi_accounts (server_name, localpart {binary})""",
        """CREATE INDEX IF NOT EXISTS dendrite_admin_accounts_created_idx
            ON userapi_accounts (server_name, created_ts, localpart {binary})""",
        """CREATE INDEX IF NOT EXISTS dendrite_admin_accounts_admin_idx
            ON userapi_accounts (server_name,
                (CASE WHEN account_type = 3 THEN 1 ELSE 0 END), localpart {binary})""",
        """CREATE INDEX IF NOT EXISTS dendrite_admin_accounts_guest_idx
            ON userapi_accounts (server_name,
                (CASE WHEN account_type = 2 THEN 1 ELSE 0 END), localpart {binary})""",
        """CREATE INDEX IF NOT EXISTS dendrite_admin_accounts_deactivated_idx
            ON userapi_accounts (server_name,
                (CASE WHEN is_deactivated THEN 1 ELSE 0 END), localpart {binary})""",
        # Ordering by display name or avatar drives the page from the profiles (an
        # inner join): every account has a profile row, as Dendrite and create_account
        # write one; accounts made without one earlier get an empty one here.
        """INSERT INTO userapi_profiles (localpart, server_name, display_name, avatar_url)
            SELECT a.localpart, a.server_name, '', '' FROM userapi_accounts a
            WHERE NOT EXISTS (SELECT 1 FROM userapi_profiles p
                WHERE p.localpart = a.localpart AND p.server_name = a.server_name)""",
        """CREATE INDEX IF NOT EXISTS dendrite_admin_profiles_displayname_idx
            ON userapi_profiles (server_name, (COALESCE(display_name, '') {binary}),
                localpart {binary})""",
        """CREATE INDEX IF NOT EXISTS dendrite_admin_profiles_avatar_idx
            ON userapi_profiles (server_name, (COALESCE(avatar_url, '') {binary}),
                localpart {binary})""",
    ),
)

# Every feature's schema changes, in version order.  Versions are assigned per feature
# as they are written; a version, once released, is never edited.
MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3, _V4)
SCHEMA_VERSION = MIGRATIONS[-1].version
