-- Schema version 6 (PostgreSQL dialect, as in SQLite's): the token
-- lifecycle and enrollment.
--
-- Every token may expire (expires_at). An enrollment token (role 'enroll')
-- carries the selector a host's labels must match and the uses it has left,
-- counted down in the enrolling transaction itself (the row locked by its
-- UPDATE), so that concurrent enrollments through any replica never take
-- more than it had. A token an enrollment made is bound to its host and to
-- the enrollment's selector (selector). last_used_at is when the token was
-- last used, written at most every few minutes. A revoked token is
-- deleted; host tokens are found by their host.

ALTER TABLE tokens
    ADD COLUMN selector     text,
    ADD COLUMN expires_at   timestamptz,
    ADD COLUMN uses_left    bigint CHECK (uses_left >= 0),
    ADD COLUMN last_used_at timestamptz;

CREATE INDEX tokens_host ON tokens (host) WHERE host IS NOT NULL;
