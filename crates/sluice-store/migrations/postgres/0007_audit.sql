-- Schema version 7 (PostgreSQL dialect, as in SQLite's): the audit log.
--
-- One row per mutating action of an API caller (a rollout created or acted
-- on, the freeze, an import, a stable version, a token created, used to
-- enroll or revoked, a host re-enrolled), written in the same transaction
-- as the action itself. Its own table rather than events: it names who
-- acted (the token's id, name and role, never its secret) and from where
-- (the client's address), and it records actions that are no rollout's.
--
-- Numbers come from audit_seq as events' come from event_seq: the row is
-- locked by the appending transaction until it commits, so numbers are
-- handed out in commit order and a reader following the log with `after`
-- never skips one.
CREATE TABLE audit_seq (
    id   integer PRIMARY KEY CHECK (id = 1),
    next bigint NOT NULL
);

INSERT INTO audit_seq (id, next) VALUES (1, 1);

CREATE TABLE audit (
    seq        bigint PRIMARY KEY,     -- from audit_seq
    at         timestamptz NOT NULL,
    actor_id   text NOT NULL,          -- the token's id (the start of its hash)
    actor_name text NOT NULL,          -- its name, else role-HASHSTART
    actor_role text NOT NULL,
    source     text,                   -- the client's IP address
    kind       text NOT NULL,          -- rollout_created, freeze_on, token_revoked, ...
    target     text,                   -- what it acted on: a rollout, token, host, component
    reason     text,
    data       json NOT NULL
);

CREATE INDEX audit_at ON audit (at);

-- The secret replicas prove a forwarded request with, so that the leader
-- believes the client address a replica passes on (and nobody else's).
-- Made by the first replica that needs it, from its OS's random source.
CREATE TABLE forwarding_key (
    id  integer PRIMARY KEY CHECK (id = 1),
    key text NOT NULL
);
