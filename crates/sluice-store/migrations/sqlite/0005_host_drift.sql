-- Schema version 5 (SQLite dialect, as in PostgreSQL's): drift. An agent
-- that finds its host at another version than the desired one it had
-- reached, outside an apply (someone changed it by hand), reports the
-- component drifted; the server keeps that beside the report, so that the
-- host and fleet views and `sluice hosts list --drifted` show it after a
-- restart too. Rows written before this version were not drifted.

ALTER TABLE host_components
    ADD COLUMN drifted INTEGER NOT NULL DEFAULT 0 CHECK (drifted IN (0, 1));
