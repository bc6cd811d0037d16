-- Schema version 6 (SQLite dialect, as in PostgreSQL's): the token
-- lifecycle and enrollment.
--
-- Every token may expire (expires_at). An enrollment token (role 'enroll')
-- carries the selector a host's labels must match and the uses it has left,
-- counted down in the enrolling transaction itself, so that concurrent
-- enrollments never take more than it had. A token an enrollment made is
-- bound to its host and to the enrollment's selector (selector). last_used_at
-- is when the token was last used, written at most every few minutes.
-- A revoked token is deleted; host tokens are found by their host.

ALTER TABLE tokens ADD COLUMN selector TEXT;
ALTER TABLE tokens ADD COLUMN expires_at TEXT;
ALTER TABLE tokens ADD COLUMN uses_left INTEGER CHECK (uses_left >= 0);
ALTER TABLE tokens ADD COLUMN last_used_at TEXT;

CREATE INDEX tokens_host ON tokens (host) WHERE host IS NOT NULL;
