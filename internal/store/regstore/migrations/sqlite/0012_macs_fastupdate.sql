-- Nothing changes on SQLite, which finds a MAC through reg_node_macs
-- (0011). (On PostgreSQL this version stops the GIN index on macs from
-- queueing new entries in a pending list that every lookup reads.)
SELECT 1;
