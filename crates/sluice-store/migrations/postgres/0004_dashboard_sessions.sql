-- Schema version 4 (PostgreSQL dialect, as in SQLite's): the dashboard's
-- sessions, so that a signed-in user stays signed in across a restart of
-- the server and a change of leader.
--
-- A session is kept by the SHA-256 of its secret (the cookie's value), as
-- tokens are: whoever reads the database cannot sign in with what it holds.
-- It names the token it was signed in with by that token's hash, and acts
-- with the token's role and name as stored. Its CSRF token is derived from
-- the secret and not stored. Rows past expires_at are not loaded, and are
-- deleted when a leader loads its state and at every sign-in.

CREATE TABLE dashboard_sessions (
    hash       text PRIMARY KEY,       -- SHA-256 of the session's secret, hex
    token      text NOT NULL,          -- the hash of the token signed in with
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE INDEX dashboard_sessions_expires_at ON dashboard_sessions (expires_at);
