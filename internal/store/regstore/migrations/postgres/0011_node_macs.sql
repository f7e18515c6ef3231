-- Nothing changes on PostgreSQL: the GIN index on macs (0004) already finds
-- a node by one of its MACs. (On SQLite this version indexes each MAC in a
-- table of its own, reg_node_macs.)
SELECT 1;
