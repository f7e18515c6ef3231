-- macs and cert_chain become JSON, as on SQLite, so that one store
-- implementation reads and writes both engines: macs a JSON array of
-- strings, cert_chain a JSON array of base64 DER certificates (NULL while
-- the node has none). PostgreSQL allows no subquery in ALTER COLUMN … USING,
-- hence the new column for the chain.
DROP INDEX reg_nodes_macs;

ALTER TABLE reg_nodes ALTER COLUMN macs TYPE JSONB USING to_jsonb(macs);

-- Serves the duplicate-MAC lookups (macs ?| ...).
CREATE INDEX reg_nodes_macs ON reg_nodes USING GIN (macs);

ALTER TABLE reg_nodes ADD COLUMN cert_chain_json JSONB;

UPDATE reg_nodes SET cert_chain_json = (
	SELECT COALESCE(jsonb_agg(translate(encode(c, 'base64'), E'\n', '') ORDER BY o), '[]'::jsonb)
	FROM unnest(cert_chain) WITH ORDINALITY AS u(c, o))
WHERE cert_chain IS NOT NULL;

ALTER TABLE reg_nodes DROP COLUMN cert_chain;

ALTER TABLE reg_nodes RENAME COLUMN cert_chain_json TO cert_chain;
