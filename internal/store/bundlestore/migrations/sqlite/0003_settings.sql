-- Settings an administrator stores for every replica (issue 15): the
-- approval policy of node uploads ("required" or "auto"), which overrides
-- berthd's --bundle-require-approval. One row per setting.
CREATE TABLE bundle_settings (
	name       TEXT        NOT NULL PRIMARY KEY,
	value      TEXT        NOT NULL,
	updated_at INTEGER NOT NULL,
	updated_by TEXT        NOT NULL
) STRICT;
