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
	Quote(ctx context.Context, nonce []byte, pcrs []int) (attest.Quote, error)
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
		AkPublic:          k.PublicArea(tpm.KeyAK),
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
	if len(ch.GetAkCredentialBlob()) > 0 {
		akSecret, err := k.ActivateCredential(ctx, tpm.KeyAK, attest.Challenge{
			CredentialBlob: ch.GetAkCredentialBlob(), EncryptedSecret: ch.GetAkEncryptedSecret(),
		})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrTPMActivation, err)
		}
		answer.Tpm.AkActivatedSecret = akSecret
	}
	a.log.Debug("TPM credential activated; registering with the secret")
	return client.Register(ctx, answer)
}

// quoteBoot answers a quote challenge: the TPM quotes the PCRs the server
// asked for with its nonce, and Resume takes the quote and returns the
// credentials. A node refused for what it booted gets the refusal here.
func (a *Agent) quoteBoot(ctx context.Context, client berthv1.RegistrationServiceClient, ch *berthv1.QuoteChallenge) (*berthv1.ResumeResponse, error) {
	k, err := a.tpmKeys()
	if err != nil {
		return nil, err
	}
	pcrs := make([]int, len(ch.GetPcrs()))
	for i, p := range ch.GetPcrs() {
		pcrs[i] = int(p)
	}
	q, err := k.Quote(ctx, ch.GetNonce(), pcrs)
	if err != nil {
		return nil, fmt.Errorf("quote the boot PCRs: %w", err)
	}
	values := make(map[uint32][]byte, len(q.PCRs))
	for p, v := range q.PCRs {
		values[uint32(p)] = v
	}
	a.log.Debug("boot quoted; resuming with the quote", "pcrs", pcrs)
	return client.Resume(ctx, &berthv1.ResumeRequest{Quote: &berthv1.TPMQuote{
		Nonce: ch.GetNonce(), Attest: q.Attest, Signature: q.Signature, Pcrs: values,
	}, Boot: a.bootBeat()})
}
