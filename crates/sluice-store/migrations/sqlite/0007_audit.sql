-- Schema version 7 (SQLite dialect, as in PostgreSQL's): the audit log.
--
-- One row per mutating action of an API caller (a rollout created or acted
-- on, the freeze, an import, a stable version, a token created, used to
-- enroll or revoked, a host re-enrolled), written in the same transaction
-- as the action itself. Its own table rather than events: it names who
-- acted (the token's id, name and role, never its secret) and from where
-- (the client's address), and it records actions that are no rollout's.
-- AUTOINCREMENT: a number is never reused, so a reader following the log
-- with `after` never misses one.
CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT NOT NULL,
    actor_id   TEXT NOT NULL,          -- the token's id (the start of its hash)
    actor_name TEXT NOT NULL,          -- its name, else role-HASHSTART
    actor_role TEXT NOT NULL,
    source     TEXT,                   -- the client's IP address
    kind       TEXT NOT NULL,          -- rollout_created, freeze_on, token_revoked, ...
    target     TEXT,                   -- what it acted on: a rollout, token, host, component
    reason     TEXT,
    data       TEXT NOT NULL           -- JSON object
) STRICT;

CREATE INDEX audit_at ON audit (at);
