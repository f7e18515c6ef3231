package attest

// Challenge is a credential made by the server for one TPM key under one
// EK (TPM2_MakeCredential's output, computed in software). Only the TPM
// holding both the EK and the key can recover the secret inside it.
type Challenge struct {
	// CredentialBlob is the TPM2B_ID_OBJECT's contents: the integrity HMAC
	// and the encrypted credential.
	CredentialBlob []byte
	// EncryptedSecret is the seed, encrypted to the EK (RSA-OAEP, or ECDH
	// for an ECC EK).
	EncryptedSecret []byte
}

// Quote is a TPM quote over a set of PCRs with the values it covers.
type Quote struct {
	// Attest is the TPMS_ATTEST the TPM signed.
	Attest []byte
	// Signature is the attestation key's TPMT_SIGNATURE over Attest.
	Signature []byte
	// PCRs holds the SHA-256 bank's value of each quoted PCR, by index.
	// The server recomputes the quote's PCR digest from them.
	PCRs map[int][]byte
}

// DefaultPCRs are the boot PCRs a quote covers unless told otherwise:
// 0-7, what the firmware measures up to and including the boot loader
// (PC Client Platform Firmware Profile, section 3.3.4).
func DefaultPCRs() []int { return []int{0, 1, 2, 3, 4, 5, 6, 7} }
