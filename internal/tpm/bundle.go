package tpm

import (
	"crypto/ecdh"
	"crypto/hpke"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// exchanger is the bundle key as an ecdh.KeyExchanger over
// TPM2_ECDH_ZGen: the TPM multiplies the peer's point by the private
// scalar, which never leaves it.
type exchanger struct {
	t   *TPM
	pub *ecdh.PublicKey
}

var _ ecdh.KeyExchanger = exchanger{}

func newBundleKey(t *TPM) (hpke.PrivateKey, error) {
	pub, err := eccPublic(t.keys[KeyBundle].pub)
	if err != nil {
		return nil, fmt.Errorf("bundle key: %w", err)
	}
	epub, err := pub.ECDH()
	if err != nil {
		return nil, fmt.Errorf("bundle key: %w", err)
	}
	k, err := hpke.NewDHKEMPrivateKey(exchanger{t: t, pub: epub})
	if err != nil {
		return nil, fmt.Errorf("bundle key: %w", err)
	}
	return k, nil
}

// PublicKey implements ecdh.KeyExchanger.
func (e exchanger) PublicKey() *ecdh.PublicKey { return e.pub }

// Curve implements ecdh.KeyExchanger.
func (e exchanger) Curve() ecdh.Curve { return ecdh.P256() }

// ECDH implements ecdh.KeyExchanger: the X coordinate of the shared point,
// 32 bytes, as ecdh.PrivateKey.ECDH returns it.
func (e exchanger) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	if peer == nil || peer.Curve() != ecdh.P256() {
		return nil, fmt.Errorf("%w: the TPM bundle key is P-256; the peer key is not", ErrInvalid)
	}
	raw := peer.Bytes() // 0x04 || X || Y, the point already validated
	var out *tpm2.TPMSECCPoint
	err := e.t.doTimeout(func(tp transport.TPM) error {
		o := e.t.keys[KeyBundle]
		if err := e.t.objs.ensure(tp, o); err != nil {
			return err
		}
		rsp, err := tpm2.ECDHZGen{
			KeyHandle: o.named(),
			InPoint: tpm2.New2B(tpm2.TPMSECCPoint{
				X: tpm2.TPM2BECCParameter{Buffer: raw[1:33]},
				Y: tpm2.TPM2BECCParameter{Buffer: raw[33:]},
			}),
		}.Execute(tp)
		if err != nil {
			return fmt.Errorf("tpm ecdh: %w", err)
		}
		out, err = rsp.OutPoint.Contents()
		return err
	})
	if err != nil {
		return nil, err
	}
	x := out.X.Buffer
	if len(x) > 32 {
		return nil, fmt.Errorf("tpm ecdh: shared point X of %d bytes", len(x))
	}
	z := make([]byte, 32) // the TPM may drop leading zero bytes
	copy(z[32-len(x):], x)
	return z, nil
}
