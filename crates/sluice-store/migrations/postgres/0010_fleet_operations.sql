-- Schema version 10 (PostgreSQL dialect, as in SQLite's): fleet
-- operations. The fleet-wide change budget (at most one row, while a
-- budget is set) and the pins of hosts to versions (one row per host and
-- component, until the pin expires or is lifted).

CREATE TABLE fleet_budget (
    id            integer PRIMARY KEY CHECK (id = 1),
    max_in_flight text NOT NULL,       -- a count (50) or a share (2%)
    per_stratum   text,                -- likewise, per stratum; NULL: none
    spread        text NOT NULL,       -- JSON array of label names
    actor         text NOT NULL,
    reason        text NOT NULL,
    since         timestamptz NOT NULL
);

CREATE TABLE pins (
    host       text NOT NULL,
    component  text NOT NULL,
    version    text NOT NULL,
    expires_at timestamptz NOT NULL,
    actor      text NOT NULL,
    reason     text NOT NULL,
    since      timestamptz NOT NULL,
    PRIMARY KEY (host, component)
);
