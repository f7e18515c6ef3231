-- Every registration looks for duplicate hardware through the GIN index on
-- macs. With fastupdate, PostgreSQL's default, a new node's MACs wait in
-- the index's pending list until the next vacuum, and every search reads
-- that whole list: in a registration storm each lookup read every node
-- registered since the last vacuum, so a registration's cost grew with the
-- storm (the index part of a lookup took 607 µs with 3,908 entries pending,
-- 74 µs with none; issue 17). Off, each insert updates the index itself.
ALTER INDEX reg_nodes_macs SET (fastupdate = off);
-- Entries left pending by earlier versions would wait for a vacuum.
SELECT gin_clean_pending_list('reg_nodes_macs');
