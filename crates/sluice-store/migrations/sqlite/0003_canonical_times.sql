-- Schema version 3 (SQLite dialect): every stored time in one canonical
-- form, RFC 3339 in UTC with exactly six fractional digits:
-- 2026-03-01T09:30:00.000000Z.
--
-- Why ordering by a time column is time order: every value has the same
-- width and its fields run from the year down to the microsecond, each
-- zero-padded, so comparing two values as text compares them as times.
-- (Text of different widths does not: '...:00Z' sorts after '...:00.5Z'.)
-- The store writes only this form (years 0 to 9999) and parses what it
-- reads, failing the load on a value that is not a time.
--
-- sluice wrote this form before too; this rewrites any other UTC value
-- (no fraction, or fewer or more than six digits) to it. In PostgreSQL,
-- version 3 adds the leader lease and the replicas, which an embedded
-- store, always its own single leader, does not need.

UPDATE hosts SET last_seen =
    CASE WHEN instr(last_seen, '.') = 0
         THEN substr(last_seen, 1, 19) || '.000000Z'
         ELSE substr(last_seen, 1, 20)
              || substr(substr(last_seen, 21, length(last_seen) - 21) || '000000', 1, 6) || 'Z'
    END
WHERE last_seen GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z'
  AND last_seen NOT GLOB '????-??-??T??:??:??.[0-9][0-9][0-9][0-9][0-9][0-9]Z';

UPDATE host_components SET at =
    CASE WHEN instr(at, '.') = 0
         THEN substr(at, 1, 19) || '.000000Z'
         ELSE substr(at, 1, 20) || substr(substr(at, 21, length(at) - 21) || '000000', 1, 6) || 'Z'
    END
WHERE at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z'
  AND at NOT GLOB '????-??-??T??:??:??.[0-9][0-9][0-9][0-9][0-9][0-9]Z';

UPDATE rollouts SET created_at =
    CASE WHEN instr(created_at, '.') = 0
         THEN substr(created_at, 1, 19) || '.000000Z'
         ELSE substr(created_at, 1, 20)
              || substr(substr(created_at, 21, length(created_at) - 21) || '000000', 1, 6) || 'Z'
    END
WHERE created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z'
  AND created_at NOT GLOB '????-??-??T??:??:??.[0-9][0-9][0-9][0-9][0-9][0-9]Z';

UPDATE rollouts SET updated_at =
    CASE WHEN instr(updated_at, '.') = 0
         THEN substr(updated_at, 1, 19) || '.000000Z'
         ELSE substr(updated_at, 1, 20)
              || substr(substr(updated_at, 21, length(updated_at) - 21) || '000000', 1, 6) || 'Z'
    END
WHERE updated_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z'
  AND updated_at NOT GLOB '????-??-??T??:??:??.[0-9][0-9][0-9][0-9][0-9][0-9]Z';

UPDATE events SET at =
    CASE WHEN instr(at, '.') = 0
         THEN substr(at, 1, 19) || '.000000Z'
         ELSE substr(at, 1, 20) || substr(substr(at, 21, length(at) - 21) || '000000', 1, 6) || 'Z'
    END
WHERE at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z'
  AND at NOT GLOB '????-??-??T??:??:??.[0-9][0-9][0-9][0-9][0-9][0-9]Z';

UPDATE freeze SET since =
    CASE WHEN instr(since, '.') = 0
         THEN substr(since, 1, 19) || '.000000Z'
         ELSE substr(since, 1, 20) || substr(substr(since, 21, length(since) - 21) || '000000', 1, 6) || 'Z'
    END
WHERE since GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z'
  AND since NOT GLOB '????-??-??T??:??:??.[0-9][0-9][0-9][0-9][0-9][0-9]Z';

UPDATE tokens SET created_at =
    CASE WHEN instr(created_at, '.') = 0
         THEN substr(created_at, 1, 19) || '.000000Z'
         ELSE substr(created_at, 1, 20)
              || substr(substr(created_at, 21, length(created_at) - 21) || '000000', 1, 6) || 'Z'
    END
WHERE created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z'
  AND created_at NOT GLOB '????-??-??T??:??:??.[0-9][0-9][0-9][0-9][0-9][0-9]Z';

-- A sample's time is part of its key: two samples whose times differ only
-- in how they were written would collide, and the newer one is kept.
UPDATE OR REPLACE rollout_samples SET at =
    CASE WHEN instr(at, '.') = 0
         THEN substr(at, 1, 19) || '.000000Z'
         ELSE substr(at, 1, 20) || substr(substr(at, 21, length(at) - 21) || '000000', 1, 6) || 'Z'
    END
WHERE at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z'
  AND at NOT GLOB '????-??-??T??:??:??.[0-9][0-9][0-9][0-9][0-9][0-9]Z';
