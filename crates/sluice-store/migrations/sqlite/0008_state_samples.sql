-- Schema version 8 (SQLite dialect, as in PostgreSQL's): the rollout
-- retrospective's chart of hosts by state over time. Per rollout, how many
-- of its hosts were in each state (waiting, instructed, healthy, failed,
-- reverting, reverted), at most one row per rollout and second. Unlike the
-- samples of hosts by version, these are written with the group commit, in
-- the batch of the change they count, so a crash loses none.

CREATE TABLE rollout_state_samples (
    rollout TEXT NOT NULL,
    at      TEXT NOT NULL,
    counts  TEXT NOT NULL,             -- JSON object: state -> hosts
    PRIMARY KEY (rollout, at)
) STRICT, WITHOUT ROWID;
