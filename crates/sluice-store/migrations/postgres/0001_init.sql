-- sluice's first schema (PostgreSQL dialect): the tables of the SQLite
-- dialect's version 1, in PostgreSQL's types.
--
-- Times are timestamptz: microseconds, compared and ordered as times. JSON
-- the store never looks inside is json (kept as written, checked to be
-- JSON). Foreign keys are deferred to the commit so that the writes of one
-- batch may come in any order.

CREATE TABLE hosts (
    id        text PRIMARY KEY,
    labels    json NOT NULL,           -- object of strings
    last_seen timestamptz              -- NULL: imported, never checked in
);

CREATE TABLE host_components (
    host      text NOT NULL REFERENCES hosts (id) DEFERRABLE INITIALLY DEFERRED,
    component text NOT NULL,
    version   text NOT NULL,
    state     text,                    -- ok | applying | failed; NULL when imported
    message   text,
    at        timestamptz NOT NULL,
    PRIMARY KEY (host, component)
);

CREATE TABLE components (
    name           text PRIMARY KEY,
    stable_version text
);

CREATE TABLE rollouts (
    id         text PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    component  text NOT NULL,
    state      text NOT NULL,
    plan       text NOT NULL,          -- as submitted, YAML or JSON
    header     json NOT NULL,          -- the engine's snapshot without hosts
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE INDEX rollouts_state ON rollouts (state);

CREATE TABLE rollout_hosts (
    rollout text NOT NULL REFERENCES rollouts (id) DEFERRABLE INITIALLY DEFERRED,
    host    text NOT NULL REFERENCES hosts (id) DEFERRABLE INITIALLY DEFERRED,
    record  json NOT NULL,             -- the engine's per-host record
    PRIMARY KEY (rollout, host)
);

-- Event sequence numbers, handed out in commit order.
--
-- A sequence (BIGSERIAL) is not commit order under concurrent writers:
-- transaction A takes 5, B takes 6 and commits first; a reader sees 6,
-- pages on with after=6 and never sees 5. Instead every transaction that
-- appends events first takes the next range from this one row
-- (UPDATE ... SET next = next + n RETURNING), which locks the row until
-- that transaction ends. The next appender waits for the lock, so ranges
-- are handed out in the order their transactions commit, and a commit is
-- visible before its lock is let go: whoever sees an event also sees every
-- event with a smaller number. A transaction that rolls back gives its
-- range back with the row. Appenders are serialized; in sluice only the
-- leader appends, one batch at a time, so this costs nothing.
CREATE TABLE event_seq (
    id   integer PRIMARY KEY CHECK (id = 1),
    next bigint NOT NULL
);

INSERT INTO event_seq (id, next) VALUES (1, 1);

CREATE TABLE events (
    seq     bigint PRIMARY KEY,        -- from event_seq
    rollout text REFERENCES rollouts (id) DEFERRABLE INITIALLY DEFERRED,  -- NULL: fleet-wide
    at      timestamptz NOT NULL,
    actor   text,
    kind    text NOT NULL,
    data    json NOT NULL
);

CREATE INDEX events_rollout_seq ON events (rollout, seq);

-- At most one row: the fleet-wide freeze, while it is on.
CREATE TABLE "freeze" (   -- quoted: FREEZE is a keyword in PostgreSQL
    id     integer PRIMARY KEY CHECK (id = 1),
    actor  text NOT NULL,
    reason text NOT NULL,
    since  timestamptz NOT NULL
);

CREATE TABLE tokens (
    hash       text PRIMARY KEY,       -- SHA-256 of the secret, hex
    role       text NOT NULL,
    host       text,                   -- agent tokens: the host they act as (it may not exist yet)
    name       text,
    created_at timestamptz NOT NULL
);
