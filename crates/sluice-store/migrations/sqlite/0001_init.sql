-- sluice's first schema (SQLite dialect).
--
-- Timestamps are RFC 3339 UTC text, as the engine writes them. JSON columns
-- hold text the store never looks inside. Foreign keys are deferred to the
-- commit so that the writes of one batch may come in any order.
-- STRICT tables make SQLite enforce the declared column types. The big
-- tables (a row per host, or per host and component or rollout) are
-- WITHOUT ROWID: stored in primary-key order, one B-tree instead of two.

CREATE TABLE hosts (
    id        TEXT PRIMARY KEY NOT NULL,
    labels    TEXT NOT NULL,           -- JSON object of strings
    last_seen TEXT                     -- NULL: imported, never checked in
) STRICT, WITHOUT ROWID;

CREATE TABLE host_components (
    host      TEXT NOT NULL REFERENCES hosts (id) DEFERRABLE INITIALLY DEFERRED,
    component TEXT NOT NULL,
    version   TEXT NOT NULL,
    state     TEXT,                    -- ok | applying | failed; NULL when imported
    message   TEXT,
    at        TEXT NOT NULL,
    PRIMARY KEY (host, component)
) STRICT, WITHOUT ROWID;

CREATE TABLE components (
    name           TEXT PRIMARY KEY NOT NULL,
    stable_version TEXT
) STRICT;

CREATE TABLE rollouts (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    component  TEXT NOT NULL,
    state      TEXT NOT NULL,
    plan       TEXT NOT NULL,          -- as submitted, YAML or JSON
    header     TEXT NOT NULL,          -- JSON, the engine's snapshot without hosts
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

CREATE INDEX rollouts_state ON rollouts (state);

CREATE TABLE rollout_hosts (
    rollout TEXT NOT NULL REFERENCES rollouts (id) DEFERRABLE INITIALLY DEFERRED,
    host    TEXT NOT NULL REFERENCES hosts (id) DEFERRABLE INITIALLY DEFERRED,
    record  TEXT NOT NULL,             -- JSON, the engine's per-host record
    PRIMARY KEY (rollout, host)
) STRICT, WITHOUT ROWID;

-- AUTOINCREMENT: a sequence number is never reused, even after the newest
-- event is deleted, so that readers paging with `after` never miss one.
CREATE TABLE events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout TEXT REFERENCES rollouts (id) DEFERRABLE INITIALLY DEFERRED,  -- NULL: fleet-wide
    at      TEXT NOT NULL,
    actor   TEXT,
    kind    TEXT NOT NULL,
    data    TEXT NOT NULL              -- JSON
) STRICT;

CREATE INDEX events_rollout_seq ON events (rollout, seq);

-- At most one row: the fleet-wide freeze, while it is on.
CREATE TABLE freeze (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    actor  TEXT NOT NULL,
    reason TEXT NOT NULL,
    since  TEXT NOT NULL
) STRICT;

CREATE TABLE tokens (
    hash       TEXT PRIMARY KEY NOT NULL,  -- SHA-256 of the secret, hex
    role       TEXT NOT NULL,
    host       TEXT,                       -- agent tokens: the host they act as (it may not exist yet)
    name       TEXT,
    created_at TEXT NOT NULL
) STRICT;
