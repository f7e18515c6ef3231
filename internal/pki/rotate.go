package pki

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"

	"go.step.sm/crypto/x509util"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/mtls"
)

// Rotation is the outcome of RotateIntermediate.
type Rotation struct {
	// Dir is the CA role's directory the new intermediate was written to.
	Dir      string
	Old, New *x509.Certificate
}

// RotateIntermediate makes a new intermediate CA under the root whose key
// is at rootKeyPath and writes it, with its new key, into the CA role's
// directory (dir is the whole PKI or the CA role's own directory). The
// old intermediate's key is overwritten. The CA role signs with the new
// intermediate from its next start; service and node certificates issued
// under the old one chain to the same root and stay valid until they
// expire, and nodes keep their pinned CA hash.
func RotateIntermediate(ctx context.Context, dir, rootKeyPath string, clk clock.Clock) (*Rotation, error) {
	ca, err := OpenRole(dir, ServiceCA)
	if err != nil {
		return nil, err
	}
	old, err := ca.intermediate()
	if err != nil {
		return nil, err
	}
	rootKey, err := readSigner(rootKeyPath)
	if err != nil {
		return nil, err
	}
	if !mtls.SameKey(rootKey.Public(), ca.Root.PublicKey) {
		return nil, fmt.Errorf("%s is not the key of the root in %s", rootKeyPath, filepath.Join(ca.Dir, RootCertFile))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := clock.Or(clk).Now()
	inter, err := newCA(ca.TrustDomain, "berth intermediate CA", x509util.DefaultIntermediateTemplate,
		&issuer{cert: ca.Root, key: rootKey}, now, IntermediateLifetime)
	if err != nil {
		return nil, fmt.Errorf("new intermediate: %w", err)
	}
	if inter.cert.NotAfter.After(ca.Root.NotAfter) {
		return nil, fmt.Errorf("the root expires on %s, before a new intermediate would; make a new PKI instead",
			ca.Root.NotAfter.Format("2006-01-02"))
	}
	keyPEM, err := pemKey(inter.key)
	if err != nil {
		return nil, err
	}
	// Key first: a stop between the two renames leaves a key that does not
	// match the certificate, which the CA role refuses at start by name,
	// rather than an old key that would still sign.
	if err := replaceFile(filepath.Join(ca.Dir, IntermediateKeyFile), keyPEM, keyMode); err != nil {
		return nil, err
	}
	if err := replaceFile(filepath.Join(ca.Dir, IntermediateCertFile), pemCerts(inter.cert), certMode); err != nil {
		return nil, err
	}
	return &Rotation{Dir: ca.Dir, Old: old, New: inter.cert}, nil
}

// replaceFile writes data to path through a temporary file and a rename,
// so that readers see the old content or the new, never a part.
func replaceFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".new"
	_ = os.Remove(tmp)
	if err := writeNew(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}
