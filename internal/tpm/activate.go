package tpm

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/internal/attest"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// ActivateCredential recovers the secret in a credential the server made
// for key k under this TPM's EK (TPM2_ActivateCredential). The TPM
// releases it only if it holds the EK and a loaded key whose Name is the
// one the credential names, which is what proves to the server that the
// key lives in this TPM. A credential made for another TPM or another key
// fails with ErrActivation.
func (t *TPM) ActivateCredential(ctx context.Context, k Key, ch attest.Challenge) ([]byte, error) {
	o := t.keys[k]
	if o == nil {
		return nil, fmt.Errorf("%w: no such key %v", ErrInvalid, k)
	}
	var secret []byte
	err := t.do(ctx, func(tp transport.TPM) error {
		ek, _, err := t.endorsementKey(tp)
		if err != nil {
			return err
		}
		if err := t.objs.ensure(tp, o, ek); err != nil {
			return err
		}
		rsp, err := tpm2.ActivateCredential{
			ActivateHandle: o.named(),
			KeyHandle: tpm2.AuthHandle{
				Handle: ek.named().Handle,
				Name:   ek.name,
				Auth:   tpm2.Policy(tpm2.TPMAlgSHA256, 16, endorsementPolicy),
			},
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: ch.CredentialBlob},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: ch.EncryptedSecret},
		}.Execute(tp)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrActivation, err)
		}
		secret = rsp.CertInfo.Buffer
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("activate credential for the %v: %w", k, err)
	}
	return secret, nil
}

// endorsementPolicy satisfies the default EK templates' policy,
// TPM2_PolicySecret(TPM_RH_ENDORSEMENT), with the endorsement hierarchy's
// auth, which is empty unless the machine's owner set one.
func endorsementPolicy(tp transport.TPM, session tpm2.TPMISHPolicy, nonceTPM tpm2.TPM2BNonce) error {
	_, err := tpm2.PolicySecret{
		AuthHandle:    tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		PolicySession: session,
		NonceTPM:      nonceTPM,
	}.Execute(tp)
	return err
}
