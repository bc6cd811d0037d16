-- Schema version 3 (PostgreSQL dialect): replicas sharing this database,
-- and the lease that makes one of them the leader. (In SQLite, version 3
-- makes stored times canonical; PostgreSQL's are typed from the start.)
--
-- The lease is one row, timed only by the database's clock
-- (clock_timestamp()), never a replica's. Taking it (when nobody holds it
-- or it expired) raises the epoch; renewing and releasing match holder,
-- epoch and an unexpired lease, never the holder's name alone. The row
-- stays after a release (expires_at set to the release time), so the
-- epoch only grows. Every commit of the leader locks the row FOR SHARE and
-- checks holder, epoch and expiry before writing (fencing): a takeover,
-- which updates the row, waits for commits in flight, and a commit after
-- it sees the new epoch and writes nothing. Session advisory locks are not
-- used: they break behind transaction pooling and with silently dropped
-- connections.
CREATE TABLE leader_lease (
    id          integer PRIMARY KEY CHECK (id = 1),
    holder      text NOT NULL,         -- replica id
    address     text NOT NULL,         -- where other replicas reach it
    epoch       bigint NOT NULL,
    acquired_at timestamptz NOT NULL,
    renewed_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- Every replica's last heartbeat, for GET /v1/cluster; rows not renewed
-- for a day are deleted by the heartbeats of the others.
CREATE TABLE replicas (
    id             text PRIMARY KEY,
    address        text NOT NULL,
    last_heartbeat timestamptz NOT NULL
);
