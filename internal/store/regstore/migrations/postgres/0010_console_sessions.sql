-- Web console sessions and unused one-time sign-in links (issue 16), kept
-- here so that every front door knows them and a restart keeps them. Only
-- the SHA-256 of each secret (the session cookie, the link) is kept;
-- principal is the front door's name for whom it acts (berth-on-behalf-of
-- form), token_id the API token it signed in with ('' for an admin
-- certificate's link), whose revocation or expiry ends the session.
CREATE TABLE reg_console_sessions (
	secret_sha256 BYTEA       NOT NULL PRIMARY KEY CHECK (length(secret_sha256) = 32),
	link          BOOLEAN     NOT NULL,
	principal     TEXT        NOT NULL,
	token_id      TEXT        NOT NULL,
	created_at    TIMESTAMPTZ NOT NULL,
	expires_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX reg_console_sessions_expiry ON reg_console_sessions (expires_at);
