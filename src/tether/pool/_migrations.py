"""The pool's database schema, as an ordered list of migrations.

One schema serves SQLite and PostgreSQL, so it uses only what both accept:
TEXT ids made in Python (no SERIAL/AUTOINCREMENT), DOUBLE PRECISION unix-second
timestamps (no time-zone arithmetic in SQL), BIGINT bytes, BOOLEAN, and JSON kept
as TEXT. ``schema_version`` holds the number of the last migration applied;
:meth:`tether.pool._store.Store.migrate` applies the rest in one transaction each,
under the same lock that serialises placement, so two pool replicas starting at
once cannot both migrate.

Never edit a migration that has shipped: append a new one.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

_V1 = [
    """CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE teams (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE users (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        is_admin BOOLEAN NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE memberships (
        team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        PRIMARY KEY (team_id, user_id)
    )""",
    """CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('user', 'node')),
        user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
        node_name TEXT,
        label TEXT NOT NULL,
        hash TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    )""",
    """CREATE TABLE quotas (
        team_id TEXT PRIMARY KEY REFERENCES teams(id) ON DELETE CASCADE,
        max_share DOUBLE PRECISION,
        max_memory_bytes BIGINT,
        device_hours_per_month DOUBLE PRECISION,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE nodes (
        name TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        schedulable TEXT NOT NULL CHECK (schedulable IN ('active', 'cordoned', 'drained')),
        lost BOOLEAN NOT NULL,
        registered_at DOUBLE PRECISION NOT NULL,
        last_heartbeat DOUBLE PRECISION NOT NULL,
        info TEXT NOT NULL
    )""",
    """CREATE TABLE devices (
        node_name TEXT NOT NULL REFERENCES nodes(name) ON DELETE CASCADE,
        device_id TEXT NOT NULL,
        vendor TEXT NOT NULL,
        model TEXT NOT NULL,
        memory_bytes BIGINT NOT NULL,
        arch TEXT NOT NULL,
        frameworks TEXT NOT NULL,
        PRIMARY KEY (node_name, device_id)
    )""",
    # A session is a queue entry until it is placed, then a lease. Both live in
    # `sessions` so that an id means one thing for its whole life.
    """CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        team_id TEXT NOT NULL REFERENCES teams(id),
        user_id TEXT NOT NULL REFERENCES users(id),
        state TEXT NOT NULL CHECK (state IN ('queued', 'placed', 'ended')),
        request TEXT NOT NULL,
        priority INTEGER NOT NULL,
        seq BIGINT NOT NULL,
        submitted_at DOUBLE PRECISION NOT NULL,
        queue_deadline DOUBLE PRECISION,
        node_name TEXT,
        started_at DOUBLE PRECISION,
        last_heartbeat DOUBLE PRECISION,
        ended_at DOUBLE PRECISION,
        end_reason TEXT,
        message TEXT,
        share DOUBLE PRECISION NOT NULL DEFAULT 0,
        memory_bytes BIGINT NOT NULL DEFAULT 0,
        metering TEXT
    )""",
    "CREATE INDEX sessions_state ON sessions (state, seq)",
    "CREATE INDEX sessions_team_time ON sessions (team_id, started_at)",
    # One row per device a lease holds: the allocation the no-double-allocation
    # invariant is about (sum of share per device <= 1 over live leases).
    """CREATE TABLE lease_devices (
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        node_name TEXT NOT NULL,
        device_id TEXT NOT NULL,
        share DOUBLE PRECISION NOT NULL,
        memory_bytes BIGINT NOT NULL,
        active BOOLEAN NOT NULL,
        PRIMARY KEY (session_id, node_name, device_id)
    )""",
    "CREATE INDEX lease_devices_active ON lease_devices (node_name, device_id, active)",
    """CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    )""",
]

# Credentials that die with their lease (issue 10). The ticket secret leaves the
# database (it lives in --secret-file now: a copy of the database must not be
# enough to forge tickets); each registration of a node gets its own id (only
# its hash is kept, and it feeds the node's ticket key); a session records when
# its ticket was first used, so a ticket opens one session only.
_V2 = [
    "DELETE FROM settings WHERE key = 'ticket_secret'",
    "ALTER TABLE nodes ADD COLUMN registration TEXT",
    "ALTER TABLE sessions ADD COLUMN connected_at DOUBLE PRECISION",
]

# Group requests (issue 14): many slices of one shape under one name, placed
# together. A group is one row here while it waits; once placed, each member is
# an ordinary session row that names its group and its index in it.
_V3 = [
    """CREATE TABLE session_groups (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        team_id TEXT NOT NULL REFERENCES teams(id),
        user_id TEXT NOT NULL REFERENCES users(id),
        state TEXT NOT NULL CHECK (state IN ('queued', 'placed', 'ended')),
        request TEXT NOT NULL,
        min_count INTEGER NOT NULL,
        max_count INTEGER NOT NULL,
        placed_count INTEGER NOT NULL DEFAULT 0,
        priority INTEGER NOT NULL,
        seq BIGINT NOT NULL,
        submitted_at DOUBLE PRECISION NOT NULL,
        queue_deadline DOUBLE PRECISION,
        placed_at DOUBLE PRECISION,
        ended_at DOUBLE PRECISION,
        end_reason TEXT,
        message TEXT
    )""",
    "CREATE INDEX session_groups_team_name ON session_groups (team_id, name, submitted_at)",
    "CREATE INDEX session_groups_state ON session_groups (state, seq)",
    "ALTER TABLE sessions ADD COLUMN group_id TEXT",
    "ALTER TABLE sessions ADD COLUMN group_index INTEGER",
    "CREATE INDEX sessions_group ON sessions (group_id, group_index)",
]

# A session's name (`tether run --name`), chosen by its user: shown in lists and
# accepted where an id is (issue 13). Not unique: the id stays the key.
_V4 = [
    "ALTER TABLE sessions ADD COLUMN name TEXT",
]

#: (version, statements) in order; version n is applied when schema_version < n.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, tuple(_V1)),
    (2, tuple(_V2)),
    (3, tuple(_V3)),
    (4, tuple(_V4)),
)
