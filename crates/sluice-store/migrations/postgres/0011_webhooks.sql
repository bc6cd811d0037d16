-- Schema version 11 (PostgreSQL dialect, as in SQLite's): webhooks. One
-- row per webhook: where events are delivered, which kinds (an empty JSON
-- array: all), how (json or slack), the secret their bodies are signed
-- with, and the delivery's progress: `delivered_seq`, the `seq` of the last
-- event of the log delivered (or skipped by the filter), and the failures
-- since the last success.

CREATE TABLE webhooks (
    id              text PRIMARY KEY,
    url             text NOT NULL,
    events          text NOT NULL,     -- JSON array of event kinds; []: all
    format          text NOT NULL,     -- json | slack
    secret          text,              -- HMAC-SHA256 key; NULL: unsigned
    created_at      timestamptz NOT NULL,
    created_by      text NOT NULL,
    delivered_seq   bigint NOT NULL,
    failures        bigint NOT NULL,
    last_error      text,
    last_attempt_at timestamptz,
    last_success_at timestamptz
);
