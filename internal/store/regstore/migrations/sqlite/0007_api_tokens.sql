-- API tokens (issue 15): bearer credentials of the admin API, each with a
-- role; only the SHA-256 of the secret is kept. NULL times: never expires,
-- never used, not revoked.
CREATE TABLE reg_api_tokens (
	id           TEXT    NOT NULL PRIMARY KEY,
	name         TEXT    NOT NULL,
	role         TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
	secret_hash  BLOB    NOT NULL CHECK (length(secret_hash) = 32),
	created_at   INTEGER NOT NULL,
	expires_at   INTEGER,
	last_used_at INTEGER,
	revoked_at   INTEGER,
	created_by   TEXT    NOT NULL
) STRICT;
