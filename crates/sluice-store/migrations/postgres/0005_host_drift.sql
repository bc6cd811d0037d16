-- Schema version 5 (PostgreSQL dialect, as in SQLite's): drift. An agent
-- that finds its host at another version than the desired one it had
-- reached, outside an apply (someone changed it by hand), reports the
-- component drifted; the server keeps that beside the report, so that the
-- host and fleet views and `sluice hosts list --drifted` show it after a
-- restart and a change of leader too. Rows written before this version
-- were not drifted (a constant default: no table rewrite).

ALTER TABLE host_components ADD COLUMN drifted boolean NOT NULL DEFAULT false;
