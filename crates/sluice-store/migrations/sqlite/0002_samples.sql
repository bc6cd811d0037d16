-- The dashboard's chart of hosts by version over time: per rollout, how many
-- of its hosts reported each version, sampled when that changes. Samples are
-- not part of a rollout's state (losing one loses a point of a chart), so
-- they are written outside the group commit and name their rollout without
-- a foreign key.

CREATE TABLE rollout_samples (
    rollout  TEXT NOT NULL,
    at       TEXT NOT NULL,
    versions TEXT NOT NULL,            -- JSON object: version -> hosts
    PRIMARY KEY (rollout, at)
) STRICT, WITHOUT ROWID;
