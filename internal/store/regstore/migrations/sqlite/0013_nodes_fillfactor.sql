-- Nothing changes on SQLite, which updates a row in place. (On PostgreSQL
-- this version leaves room on reg_nodes' pages for a node's row to grow
-- as its certificate is installed, so that the update writes no index.)
SELECT 1;
