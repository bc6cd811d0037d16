-- Schema version 11: webhooks. One row per webhook: where events are
-- delivered, which kinds (an empty JSON array: all), how (json or slack),
-- the secret their bodies are signed with, and the delivery's progress:
-- `delivered_seq`, the `seq` of the last event of the log delivered (or
-- skipped by the filter), and the failures since the last success.

CREATE TABLE webhooks (
    id              TEXT PRIMARY KEY,
    url             TEXT NOT NULL,
    events          TEXT NOT NULL,     -- JSON array of event kinds; []: all
    format          TEXT NOT NULL,     -- json | slack
    secret          TEXT,              -- HMAC-SHA256 key; NULL: unsigned
    created_at      TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    delivered_seq   INTEGER NOT NULL,
    failures        INTEGER NOT NULL,
    last_error      TEXT,
    last_attempt_at TEXT,
    last_success_at TEXT
) STRICT;
