-- A node's row is written twice as it registers: inserted with its CSR
-- (about 1.8 kB), then updated with its certificate chain (about 3.1 kB),
-- and again at every renewal. Full pages left no room for the new version
-- on its page, so nine updates in ten were not HOT: each wrote a new entry
-- into all six indexes, two of them GIN, and the issuance's UPDATE was the
-- costliest statement of a registration (issue 17). Pages filled to half
-- keep room for the grown row; the table takes no more space for it, since
-- a page holds two certified nodes either way. Pages written before this
-- version get the room as they are rewritten.
ALTER TABLE reg_nodes SET (fillfactor = 50);
