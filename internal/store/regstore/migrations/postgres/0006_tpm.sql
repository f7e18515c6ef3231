-- TPM identities (issue 13): a node's endorsement key hash and what its EK
-- certificate showed; the EKs an administrator enrolled in advance.
ALTER TABLE reg_nodes ADD COLUMN ek_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE reg_nodes ADD COLUMN ek_certificate TEXT NOT NULL DEFAULT '';

CREATE TABLE reg_eks (
	hash       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
	label      TEXT        NOT NULL,
	created_at TIMESTAMPTZ NOT NULL
);
