package loadgen

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.step.sm/crypto/jose"
	"go.step.sm/crypto/pemutil"
	"go.step.sm/crypto/x509util"
)

// ScenarioStepCASign is step-ca's POST /1.0/sign under the register
// scenario's load: the yardstick of berth's first registration.
const ScenarioStepCASign = "stepca-sign"

// The files StepCAInit writes into its directory. step-ca reads ca.json
// (and what it names); StepCASign reads the bench file.
const (
	stepCAConfigFile = "ca.json"
	stepCABenchFile  = "bench.json"
	stepCARootFile   = "root_ca.crt"
	stepCAInterFile  = "intermediate_ca.crt"
	stepCAKeyFile    = "intermediate_ca_key"
	stepCADBDir      = "db"
	// stepCAProvisioner names the JWK provisioner: the tokens' issuer.
	stepCAProvisioner = "berth-bench"
	// stepCACALife is the validity of the throwaway root and intermediate:
	// well beyond step-ca's default leaf (24 h), which must fit inside.
	stepCACALife = 7 * 24 * time.Hour
)

// stepCABench is what StepCASign needs to reach the step-ca StepCAInit
// configured: its URL, the root that verifies it, and the provisioner's
// private key that signs the one-time tokens.
type stepCABench struct {
	URL         string          `json:"url"`
	Root        string          `json:"root"`
	Provisioner string          `json:"provisioner"`
	Key         json.RawMessage `json:"key"`
}

// StepCAInit writes into dir a throwaway step-ca: a fresh P-256 root and
// intermediate (smallstep's default CA templates, as step ca init makes
// them), a JWK provisioner with a fresh key, and ca.json listening on
// listen (HOST:PORT) with its badger database in dir/db. No per-request
// access log is configured, as berthd runs at --log-level warn in the
// bench. The intermediate key is not encrypted, so step-ca starts
// without a password.
func StepCAInit(dir, listen string) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("--stepca-listen %q: want HOST:PORT", listen)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	now := time.Now()
	rootKey, root, err := newStepCACA("berth bench step-ca root", x509util.DefaultRootTemplate, nil, nil, now)
	if err != nil {
		return fmt.Errorf("root: %w", err)
	}
	interKey, inter, err := newStepCACA("berth bench step-ca intermediate", x509util.DefaultIntermediateTemplate, root, rootKey, now)
	if err != nil {
		return fmt.Errorf("intermediate: %w", err)
	}
	jwk, err := newProvisionerKey()
	if err != nil {
		return err
	}
	keyPEM, err := pemutil.Serialize(interKey)
	if err != nil {
		return err
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	cfg, err := stepCAConfig(path, listen, host, jwk.Public())
	if err != nil {
		return err
	}
	priv, err := json.Marshal(jwk)
	if err != nil {
		return err
	}
	bench, err := json.MarshalIndent(stepCABench{URL: "https://" + listen, Root: path(stepCARootFile), Provisioner: stepCAProvisioner, Key: priv}, "", "  ")
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{stepCARootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})},
		{stepCAInterFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter.Raw})},
		{stepCAKeyFile, pem.EncodeToMemory(keyPEM)},
		{stepCAConfigFile, cfg},
		{stepCABenchFile, bench},
	} {
		if err := os.WriteFile(path(f.name), f.data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// stepCAConfig is step-ca's ca.json: the files in dir (path), the address
// and the one name its TLS certificate and the tokens' audience carry, the
// default badger database, and one JWK provisioner with the default
// claims and X.509 template.
func stepCAConfig(path func(string) string, listen, host string, pub jose.JSONWebKey) ([]byte, error) {
	cfg := map[string]any{
		"root":     path(stepCARootFile),
		"crt":      path(stepCAInterFile),
		"key":      path(stepCAKeyFile),
		"address":  listen,
		"dnsNames": []string{host},
		"db":       map[string]any{"type": "badgerv2", "dataSource": path(stepCADBDir)},
		"authority": map[string]any{
			"provisioners": []any{map[string]any{"type": "JWK", "name": stepCAProvisioner, "key": pub}},
		},
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// newStepCACA makes a root (parent nil) or an intermediate with a fresh
// P-256 key from smallstep's default CA templates.
func newStepCACA(cn, tmpl string, parent *x509.Certificate, parentKey crypto.Signer, now time.Time) (crypto.Signer, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	data := x509util.NewTemplateData()
	data.SetSubject(x509util.Subject{CommonName: cn})
	c, err := x509util.NewCertificateFromX509(&x509.Certificate{PublicKey: key.Public()}, x509util.WithTemplate(tmpl, data))
	if err != nil {
		return nil, nil, err
	}
	t := c.GetCertificate()
	t.NotBefore, t.NotAfter = now.Add(-time.Minute), now.Add(stepCACALife)
	if parent == nil {
		parent, parentKey = t, key
	}
	cert, err := x509util.CreateCertificate(t, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, err
	}
	return key, cert, nil
}

// newProvisionerKey makes the JWK provisioner's ES256 key, its key ID
// the thumbprint as step ca provisioner add sets it: step-ca finds the
// provisioner of a token by issuer and key ID.
func newProvisionerKey() (*jose.JSONWebKey, error) {
	jwk, err := jose.GenerateJWK("EC", "P-256", "ES256", "sig", "", 0)
	if err != nil {
		return nil, err
	}
	if jwk.KeyID, err = jose.Thumbprint(jwk); err != nil {
		return nil, err
	}
	return jwk, nil
}

// readStepCABench reads what StepCAInit wrote for StepCASign.
func readStepCABench(dir string) (*stepCABench, *jose.JSONWebKey, *x509.CertPool, error) {
	b, err := os.ReadFile(filepath.Join(dir, stepCABenchFile))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w (make it with berth-loadgen stepca-init)", err)
	}
	var s stepCABench
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, nil, nil, fmt.Errorf("read %s: %w", stepCABenchFile, err)
	}
	var jwk jose.JSONWebKey
	if err := json.Unmarshal(s.Key, &jwk); err != nil {
		return nil, nil, nil, fmt.Errorf("read %s: provisioner key: %w", stepCABenchFile, err)
	}
	if jwk.IsPublic() || jwk.KeyID == "" {
		return nil, nil, nil, fmt.Errorf("read %s: the provisioner key must be private and have a key ID", stepCABenchFile)
	}
	roots, err := pemutil.ReadCertificateBundle(s.Root)
	if err != nil {
		return nil, nil, nil, err
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	if s.URL == "" || s.Provisioner == "" {
		return nil, nil, nil, errors.New("read " + stepCABenchFile + ": url and provisioner are required")
	}
	return &s, &jwk, pool, nil
}
