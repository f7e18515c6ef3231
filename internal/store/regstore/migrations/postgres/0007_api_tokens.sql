-- API tokens (issue 15): bearer credentials of the admin API, each with a
-- role; only the SHA-256 of the secret is kept. NULL times: never expires,
-- never used, not revoked.
CREATE TABLE reg_api_tokens (
	id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
	name         TEXT        NOT NULL,
	role         TEXT        NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
	secret_hash  BYTEA       NOT NULL CHECK (octet_length(secret_hash) = 32),
	created_at   TIMESTAMPTZ NOT NULL,
	expires_at   TIMESTAMPTZ,
	last_used_at TIMESTAMPTZ,
	revoked_at   TIMESTAMPTZ,
	created_by   TEXT        NOT NULL
);
