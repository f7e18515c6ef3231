package agent

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/internal/attest"
	"github.com/berth-dev/berth/internal/tpm"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TPMKeys is a key source held in a TPM (internal/tpm's *TPM): at
// registration the agent shows its endorsement key and identity key, and
// activates the credential the server makes for them.
type TPMKeys interface {
	Endorsement(ctx context.Context) (tpm.Endorsement, error)
	PublicArea(k tpm.Key) []byte
	ActivateCredential(ctx context.Context, k tpm.Key, ch attest.Challenge) ([]byte, error)
}

// ErrTPMActivation is a credential the TPM would not activate: the server
// made it for a key or EK that is not this TPM's.
var ErrTPMActivation = errors.New("the TPM did not activate the server's credential")

func (a *Agent) tpmKeys() (TPMKeys, error) {
	k, ok := a.cfg.Keys.(TPMKeys)
	if !ok {
		return nil, configErrorf("identity source tpm needs keys held in a TPM (--identity tpm)")
	}
	return k, nil
}

// tpmEvidence is what the registration service needs to check the TPM.
func (a *Agent) tpmEvidence(ctx context.Context) (*berthv1.TPMEvidence, error) {
	k, err := a.tpmKeys()
	if err != nil {
		return nil, err
	}
	ek, err := k.Endorsement(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the TPM's endorsement key: %w", err)
	}
	if len(ek.Cert) == 0 {
		a.log.Info("the TPM has no EK certificate; the server sees its EK only")
	}
	return &berthv1.TPMEvidence{
		EkPublic:          ek.Public,
		EkCertificate:     ek.Cert,
		IdentityKeyPublic: k.PublicArea(tpm.KeyIdentity),
	}, nil
}

// activate has the TPM release the challenge's secret and sends req again
// with it. req itself is left as it was, for later polls.
func (a *Agent) activate(ctx context.Context, client berthv1.RegistrationServiceClient, req *berthv1.RegisterRequest, ch *berthv1.TPMChallenge) (*berthv1.RegisterResponse, error) {
	k, err := a.tpmKeys()
	if err != nil {
		return nil, err
	}
	secret, err := k.ActivateCredential(ctx, tpm.KeyIdentity, attest.Challenge{
		CredentialBlob: ch.GetCredentialBlob(), EncryptedSecret: ch.GetEncryptedSecret(),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTPMActivation, err)
	}
	answer := proto.Clone(req).(*berthv1.RegisterRequest)
	answer.Tpm.ActivatedSecret = secret
	a.log.Debug("TPM credential activated; registering with the secret")
	return client.Register(ctx, answer)
}
