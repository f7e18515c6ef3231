-- Boot evidence (issue 13, second step): a TPM node's attestation key, its
-- last quoted boot PCR digest and when, the time inside the last nonce it
-- quoted (unix nanoseconds; a nonce must be newer to be accepted), why its
-- boot breaks a PCR policy; the PCR policies by label; server secrets
-- shared by every replica (the quote nonce key).
ALTER TABLE reg_nodes ADD COLUMN ak_public BYTEA NOT NULL DEFAULT ''::bytea;
ALTER TABLE reg_nodes ADD COLUMN boot_pcr_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE reg_nodes ADD COLUMN boot_pcr_digest_at TIMESTAMPTZ;
ALTER TABLE reg_nodes ADD COLUMN boot_nonce_time BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reg_nodes ADD COLUMN boot_policy_violation TEXT NOT NULL DEFAULT '';

CREATE TABLE reg_pcr_policies (
	label_key   TEXT COLLATE "C" NOT NULL,
	label_value TEXT COLLATE "C" NOT NULL,
	digests     JSONB       NOT NULL,
	enforce     BOOLEAN     NOT NULL,
	updated_at  TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (label_key, label_value)
);

CREATE TABLE reg_secrets (
	name  TEXT  NOT NULL PRIMARY KEY,
	value BYTEA NOT NULL
);
