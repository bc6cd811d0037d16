-- Schema version 8 (PostgreSQL dialect, as in SQLite's): the rollout
-- retrospective's chart of hosts by state over time, at most one row per
-- rollout and second, written with the group commit (a crash loses none).

CREATE TABLE rollout_state_samples (
    rollout text NOT NULL,
    at      timestamptz NOT NULL,
    counts  json NOT NULL,             -- object: state -> hosts
    PRIMARY KEY (rollout, at)
);
