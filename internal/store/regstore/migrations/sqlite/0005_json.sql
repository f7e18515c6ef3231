-- Nothing changes on SQLite: macs and cert_chain were JSON text from the
-- start. (On PostgreSQL this version turns them from arrays into JSONB.)
SELECT 1;
