-- Boot evidence (issue 13, second step): a TPM node's attestation key, its
-- last quoted boot PCR digest and when, the time inside the last nonce it
-- quoted (unix nanoseconds; a nonce must be newer to be accepted), why its
-- boot breaks a PCR policy; the PCR policies by label; server secrets
-- shared by every replica (the quote nonce key).
ALTER TABLE reg_nodes ADD COLUMN ak_public BLOB NOT NULL DEFAULT x'';
ALTER TABLE reg_nodes ADD COLUMN boot_pcr_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE reg_nodes ADD COLUMN boot_pcr_digest_at INTEGER;
ALTER TABLE reg_nodes ADD COLUMN boot_nonce_time INTEGER NOT NULL DEFAULT 0;
ALTER TABLE reg_nodes ADD COLUMN boot_policy_violation TEXT NOT NULL DEFAULT '';

CREATE TABLE reg_pcr_policies (
	label_key   TEXT    NOT NULL,
	label_value TEXT    NOT NULL,
	digests     TEXT    NOT NULL,
	enforce     INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL,
	PRIMARY KEY (label_key, label_value)
) STRICT;

CREATE TABLE reg_secrets (
	name  TEXT NOT NULL PRIMARY KEY,
	value BLOB NOT NULL
) STRICT;
