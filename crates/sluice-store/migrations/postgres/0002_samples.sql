-- The dashboard's chart of hosts by version over time (as in the SQLite
-- dialect's version 2): per rollout, how many of its hosts reported each
-- version, sampled when that changes. Written outside the group commit, no
-- foreign key.

CREATE TABLE rollout_samples (
    rollout  text NOT NULL,
    at       timestamptz NOT NULL,
    versions json NOT NULL,            -- object: version -> hosts
    PRIMARY KEY (rollout, at)
);
