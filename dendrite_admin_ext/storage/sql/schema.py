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
        # Position of a substring (1-based; 0 when absent).
        "strpos": "strpos",
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
        "strpos": "instr",
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


def _json_text(dialect_name: str, key: str) -> str:
    """SQL for the text at ``key`` of the JSON content of event ``e`` (a fixed key of
    the Matrix spec, never a value)."""
    if dialect_name == "postgres":
        return f"((e.content)::json ->> '{key}')"
    return f"json_extract(e.content, '$.\"{key}\"')"


def _summary_backfill(dialect_name: str) -> tuple[str, ...]:
    """Summaries of the rooms stored before v5 (later rooms get theirs as events are
    appended)."""
    def state(event_type: str, key: str) -> str:
        return (f"(SELECT {_json_text(dialect_name, key)} FROM dendrite_admin_current_state s"  # noqa: S608
                " JOIN dendrite_admin_events e ON e.event_id = s.event_id"
                f" WHERE s.room_id = r.room_id AND s.type = '{event_type}'"
                " AND s.state_key = '')")

    columns = [
        state("m.room.name", "name"),
        state("m.room.canonical_alias", "alias"),
        state("m.room.topic", "topic"),
        state("m.room.avatar", "url"),
        state("m.room.join_rules", "join_rule"),
        state("m.room.guest_access", "guest_access"),
        state("m.room.history_visibility", "history_visibility"),
        state("m.room.encryption", "algorithm"),
        state("m.room.create", "type"),
        # m.federate is a JSON boolean: false only when written so.
        "COALESCE(" + (state("m.room.create", "m.federate") if dialect_name == "postgres"
                       else state("m.room.create", "m.federate").replace(
                           "json_extract(", "json_type(")) + " <> 'false', TRUE)",
        state("m.room.tombstone", "replacement_room"),
        "(SELECT COUNT(*) FROM dendrite_admin_memberships m WHERE m.room_id = r.room_id"
        " AND m.membership = 'join')",
        "(SELECT COUNT(*) FROM dendrite_admin_current_state c WHERE c.room_id = r.room_id)",
    ]
    return (
        "INSERT INTO dendrite_admin_room_summary (room_id, name, canonical_alias, topic,"  # noqa: S608
        " avatar, join_rules, guest_access, history_visibility, encryption, room_type,"
        " federatable, replacement_room, joined_members, state_events)"
        " SELECT r.room_id, " + ", ".join(columns) + " FROM dendrite_admin_rooms r"
        " WHERE true ON CONFLICT DO NOTHING",
        "INSERT INTO dendrite_admin_room_server_members (room_id, server_name, joined)"
        " SELECT room_id, server_name, COUNT(*) FROM dendrite_admin_memberships"
        " WHERE membership = 'join' GROUP BY room_id, server_name ON CONFLICT DO NOTHING",
    )


@dataclass(frozen=True)
class _MigrationWithData(Migration):
    """A migration whose per-dialect data statements run after its DDL."""

    after: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def for_dialect(self, dialect: Dialect, *, shared: bool = False) -> list[str]:
        return [*super().for_dialect(dialect, shared=shared),
                *self.after.get(dialect.name, ())]


_V5 = _MigrationWithData(
    5,
    "Room administration and durable jobs: room summaries, blocks, jobs",
    statements=(
        # One row per room: what the room list shows and orders by (room IDs compared
        # byte-wise where they order, like the reference backend does), kept up to date as
        # events are appended (sql/core.py _append_to_room), so a list page reads rows
        # and indexes instead of folding state per request (SPEC 11).
        """CREATE TABLE IF NOT EXISTS dendrite_admin_room_summary (
            room_id TEXT NOT NULL PRIMARY KEY,
            name TEXT {binary},
            canonical_alias TEXT {binary},
            topic TEXT,
            avatar TEXT,
            join_rules TEXT,
            guest_access TEXT,
            history_visibility TEXT,
            encryption TEXT,
            room_type TEXT,
            federatable BOOLEAN NOT NULL DEFAULT TRUE,
            replacement_room TEXT,
            joined_members BIGINT NOT NULL DEFAULT 0,
            state_events BIGINT NOT NULL DEFAULT 0
        )""",
        """CREATE INDEX IF NOT EXISTS dendrite_admin_room_summary_name_idx
            ON dendrite_admin_room_summary ((name IS NULL), name, room_id {binary})""",
        """CREATE INDEX IF NOT EXISTS dendrite_admin_room_summary_size_idx
            ON dendrite_admin_room_summary (joined_members, room_id {binary})""",
        # Joined members per (room, server): joined_local_members and emptyRooms.
        """CREATE TABLE IF NOT EXISTS dendrite_admin_room_server_members (
            room_id TEXT NOT NULL,
            server_name TEXT NOT NULL,
            joined BIGINT NOT NULL,
            PRIMARY KEY (room_id, server_name)
        )""",
        """CREATE TABLE IF NOT EXISTS dendrite_admin_room_blocks (
            room_id TEXT NOT NULL PRIMARY KEY,
            user_id TEXT,
            ts BIGINT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS dendrite_admin_jobs (
            seq {serial_pk},
            job_id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            target TEXT,
            params TEXT NOT NULL,
            status TEXT NOT NULL,
            total BIGINT,
            done BIGINT NOT NULL DEFAULT 0,
            failed BIGINT NOT NULL DEFAULT 0,
            cursor TEXT,
            result TEXT NOT NULL,
            error TEXT,
            created_ts BIGINT NOT NULL,
            started_ts BIGINT,
            finished_ts BIGINT,
            worker_id TEXT,
            lease_expires_ts BIGINT
        )""",
        # Claims look for scheduled jobs and active ones whose lease ran out.
        """CREATE INDEX IF NOT EXISTS dendrite_admin_jobs_status_idx
            ON dendrite_admin_jobs (status, seq)""",
        """CREATE INDEX IF NOT EXISTS dendrite_admin_jobs_target_idx
            ON dendrite_admin_jobs (target, seq)""",
        # What a job's steps did, item by item (the users a deletion parted).
        """CREATE TABLE IF NOT EXISTS dendrite_admin_job_items (
            job_id TEXT NOT NULL,
            n BIGINT NOT NULL,
            item TEXT NOT NULL,
            PRIMARY KEY (job_id, n)
        )""",
    ),
    after={name: _summary_backfill(name) for name in ("postgres", "sqlite")},
)

# Every feature's schema changes, in version order.  Versions are assigned per feature
# as they are written; a version, once released, is never edited.
_V6 = Migration(
    6,
    "Jobs: one unfinished exclusive job per kind and target",
    statements=(
        # A row while an exclusive job (a room's deletion) is scheduled or active,
        # written with the job and deleted when it ends: the primary key decides
        # between two requests (two workers) at once, where reading for an unfinished
        # job first let both through.  A table of its own, so the migration stays
        # idempotent (SQLite has no ADD COLUMN IF NOT EXISTS).
        """CREATE TABLE IF NOT EXISTS dendrite_admin_job_locks (
            lock_key TEXT NOT NULL PRIMARY KEY,
            job_id TEXT NOT NULL UNIQUE
        )""",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3, _V4, _V5, _V6)
SCHEMA_VERSION = MIGRATIONS[-1].version
