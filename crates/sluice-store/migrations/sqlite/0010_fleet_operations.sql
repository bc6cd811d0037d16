-- Schema version 10: fleet operations. The fleet-wide change budget (at
-- most one row, while a budget is set) and the pins of hosts to versions
-- (one row per host and component, until the pin expires or is lifted).

CREATE TABLE fleet_budget (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    max_in_flight TEXT NOT NULL,       -- a count (50) or a share (2%)
    per_stratum   TEXT,                -- likewise, per stratum; NULL: none
    spread        TEXT NOT NULL,       -- JSON array of label names
    actor         TEXT NOT NULL,
    reason        TEXT NOT NULL,
    since         TEXT NOT NULL
) STRICT;

CREATE TABLE pins (
    host       TEXT NOT NULL,
    component  TEXT NOT NULL,
    version    TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    actor      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    since      TEXT NOT NULL,
    PRIMARY KEY (host, component)
) STRICT;
