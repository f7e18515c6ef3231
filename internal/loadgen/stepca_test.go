package loadgen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/jose"
	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/pemutil"
)

// caJSON is the part of step-ca's ca.json that StepCAInit must get right.
type caJSON struct {
	Root     string   `json:"root"`
	Crt      string   `json:"crt"`
	Key      string   `json:"key"`
	Address  string   `json:"address"`
	DNSNames []string `json:"dnsNames"`
	DB       struct {
		Type       string `json:"type"`
		DataSource string `json:"dataSource"`
	} `json:"db"`
	Authority struct {
		Provisioners []struct {
			Type string          `json:"type"`
			Name string          `json:"name"`
			Key  jose.JSONWebKey `json:"key"`
		} `json:"provisioners"`
	} `json:"authority"`
}

func initStepCA(t *testing.T) (string, caJSON) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "stepca")
	if err := StepCAInit(dir, "127.0.0.1:18443"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "ca.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg caJSON
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	return dir, cfg
}

// TestStepCAInit: ca.json names a root, an intermediate it signed and
// that intermediate's key, listens where asked with its database in the
// directory, and its one JWK provisioner holds the public half of the key
// the load generator signs tokens with.
func TestStepCAInit(t *testing.T) {
	dir, cfg := initStepCA(t)
	if cfg.Address != "127.0.0.1:18443" || len(cfg.DNSNames) != 1 || cfg.DNSNames[0] != "127.0.0.1" {
		t.Errorf("address %q, dnsNames %v", cfg.Address, cfg.DNSNames)
	}
	if cfg.DB.Type != "badgerv2" || cfg.DB.DataSource != filepath.Join(dir, "db") {
		t.Errorf("db %+v", cfg.DB)
	}
	root, err := pemutil.ReadCertificate(cfg.Root)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := pemutil.ReadCertificate(cfg.Crt)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pemutil.Read(cfg.Key)
	if err != nil {
		t.Fatalf("intermediate key (must read without a password): %v", err)
	}
	if err := keyutil.VerifyPair(inter.PublicKey, key); err != nil {
		t.Errorf("intermediate key: %v", err)
	}
	if !root.IsCA || !inter.IsCA || inter.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("root or intermediate is not a CA certificate")
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if err := inter.CheckSignatureFrom(root); err != nil {
		t.Errorf("intermediate is not signed by the root: %v", err)
	}
	if life := inter.NotAfter.Sub(time.Now()); life < 25*time.Hour {
		t.Errorf("intermediate ends in %v, before step-ca's default 24 h leaf would", life)
	}
	if len(cfg.Authority.Provisioners) != 1 {
		t.Fatalf("provisioners %+v", cfg.Authority.Provisioners)
	}
	p := cfg.Authority.Provisioners[0]
	bench, priv, _, err := readStepCABench(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.Type != "JWK" || p.Name != bench.Provisioner || !p.Key.IsPublic() || p.Key.KeyID != priv.KeyID {
		t.Errorf("provisioner %s %q public %v kid %q; want JWK %q with the public key %q", p.Type, p.Name, p.Key.IsPublic(), p.Key.KeyID, bench.Provisioner, priv.KeyID)
	}
	if tp, _ := jose.Thumbprint(&p.Key); tp != p.Key.KeyID {
		t.Errorf("key ID %q is not the key's thumbprint %q", p.Key.KeyID, tp)
	}
	if bench.URL != "https://127.0.0.1:18443" {
		t.Errorf("bench URL %q", bench.URL)
	}
	if err := StepCAInit(t.TempDir(), "18443"); err == nil {
		t.Error("a listen address without a host was taken")
	}
}

// TestStepCAToken: a token verifies with the provisioner key of ca.json,
// and carries what step-ca's JWK provisioner checks: issuer the
// provisioner, key ID in the header, an audience that is step-ca's
// /1.0/sign for its DNS name (step-ca ignores the port), a subject, the
// SANs of the CSR, a fresh ID, and a validity around now.
func TestStepCAToken(t *testing.T) {
	dir, cfg := initStepCA(t)
	bench, priv, roots, err := readStepCABench(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := newStepCAClient(bench, priv, roots, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := c.token("sign-000003", now)
	if err != nil {
		t.Fatal(err)
	}
	jwt, err := jose.ParseSigned(tok)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Authority.Provisioners[0]
	var claims ottClaims
	if err := jwt.Claims(p.Key.Key, &claims); err != nil {
		t.Fatalf("token does not verify with the provisioner's key: %v", err)
	}
	if h := jwt.Headers[0]; h.KeyID != p.Key.KeyID || h.Algorithm != "ES256" {
		t.Errorf("header kid %q alg %q, want %q ES256", h.KeyID, h.Algorithm, p.Key.KeyID)
	}
	if err := claims.ValidateWithLeeway(jose.Expected{Issuer: p.Name, Subject: "sign-000003", Time: now}, 0); err != nil {
		t.Errorf("claims: %v", err)
	}
	if len(claims.Audience) != 1 {
		t.Fatalf("audience %v", claims.Audience)
	}
	aud, err := url.Parse(claims.Audience[0])
	if err != nil || aud.Scheme != "https" || aud.Hostname() != cfg.DNSNames[0] || aud.Path != "/1.0/sign" {
		t.Errorf("audience %q is not https://%s[:port]/1.0/sign", claims.Audience[0], cfg.DNSNames[0])
	}
	if len(claims.SANs) != 1 || claims.SANs[0] != "sign-000003" {
		t.Errorf("sans %v", claims.SANs)
	}
	if claims.Expiry.Time().Sub(now) > ottLifetime || claims.NotBefore.Time().After(now) {
		t.Errorf("validity %v to %v around %v", claims.NotBefore.Time(), claims.Expiry.Time(), now)
	}
	tok2, err := c.token("sign-000003", now)
	if err != nil {
		t.Fatal(err)
	}
	var claims2 ottClaims
	if err := jose.Verify(mustParse(t, tok2), p.Key.Key, &claims2); err != nil {
		t.Fatal(err)
	}
	if claims.ID == "" || claims.ID == claims2.ID {
		t.Errorf("token IDs %q and %q: want two fresh ones", claims.ID, claims2.ID)
	}
}

func mustParse(t *testing.T, tok string) *jose.JSONWebToken {
	t.Helper()
	jwt, err := jose.ParseSigned(tok)
	if err != nil {
		t.Fatal(err)
	}
	return jwt
}

// TestSignNode: each node has its own key and a CSR signed by it that
// names the node as common name and DNS SAN, as the token does.
func TestSignNode(t *testing.T) {
	a, err := newSignNode(7)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newSignNode(8)
	if err != nil {
		t.Fatal(err)
	}
	if a.key.PublicKey.Equal(&b.key.PublicKey) {
		t.Error("two nodes share a key")
	}
	block, _ := pem.Decode([]byte(a.csrPEM))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("CSR PEM %q", a.csrPEM)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Error(err)
	}
	if !a.key.PublicKey.Equal(csr.PublicKey) || csr.Subject.CommonName != "sign-000007" || a.name != "sign-000007" ||
		len(csr.DNSNames) != 1 || csr.DNSNames[0] != "sign-000007" {
		t.Errorf("CSR for %q: CN %q, DNS %v", a.name, csr.Subject.CommonName, csr.DNSNames)
	}
}

// TestCheckSigned: only a certificate for the node's key and name counts
// as signed.
func TestCheckSigned(t *testing.T) {
	n, err := newSignNode(1)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	crt := func(pub *ecdsa.PublicKey, name string) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, other)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(map[string]string{"crt": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))})
		return b
	}
	for _, tt := range []struct {
		name string
		body []byte
		ok   bool
	}{
		{"its key and name", crt(&n.key.PublicKey, n.name), true},
		{"another key", crt(&other.PublicKey, n.name), false},
		{"another name", crt(&n.key.PublicKey, "sign-000002"), false},
		{"no certificate", []byte(`{"crt":""}`), false},
		{"not JSON", []byte(`<html>`), false},
	} {
		if err := checkSigned(tt.body, n); (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

func TestFillSigns(t *testing.T) {
	cpu := 10.0
	res := &Result{ServerCPUMsTotal: &cpu}
	lat := []time.Duration{4 * time.Millisecond, 1 * time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond}
	fillSigns(res, 4, lat, 2*time.Second, 6)
	if res.OK != 4 || res.ThroughputPerS != 2 || res.ElapsedS != 2 || *res.ServerCPUMsPerOp != 2.5 || *res.HandshakesPerBoot != 1.5 ||
		*res.CertsIssued != 4 || res.P50Ms != 2 || res.MaxMs != 4 {
		t.Errorf("filled %+v", res)
	}
	none := &Result{}
	fillSigns(none, 0, nil, time.Second, 0)
	if none.ThroughputPerS != 0 || none.ServerCPUMsPerOp != nil || none.HandshakesPerBoot != nil {
		t.Errorf("no signs: %+v", none)
	}
}

func TestSignErrorClass(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{&httpStatusError{code: 401, msg: "token already used"}, "HTTP 401"},
		{fmt.Errorf("sign: %w", &httpStatusError{code: 500}), "HTTP 500"},
		{fmt.Errorf("sign response: %w", errUnexpected), classUnknown},
	} {
		if got := signErrorClass(tt.err); got != tt.want {
			t.Errorf("%v: %q, want %q", tt.err, got, tt.want)
		}
	}
}

var errUnexpected = fmt.Errorf("unexpected")

// TestReportStepCA: with step-ca measured in the run, each first
// registration is compared with its rate, the goal is that rate, and the
// step-ca figures go into the summary.
func TestReportStepCA(t *testing.T) {
	results := []map[string]any{
		{"scenario": "ceiling", "handshakes_per_s": 1000.0, "cpu_ms_per_handshake": 2.0},
		{"scenario": "register", "nodes": 500.0, "ok": 500.0, "throughput_per_s": 400.0, "server_cpu_ms_per_op": 2.0, "errors": map[string]any{}},
		{"scenario": "register", "deployment": "dev", "nodes": 500.0, "ok": 500.0, "throughput_per_s": 600.0, "server_cpu_ms_per_op": 3.0, "errors": map[string]any{}},
		{"scenario": "stepca-sign", "nodes": 500.0, "ok": 500.0, "throughput_per_s": 500.0, "server_cpu_ms_per_op": 0.5,
			"p50_ms": 9.0, "certs_issued": 500.0, "errors": map[string]any{}},
	}
	var out strings.Builder
	summary, err := Report(&out, results)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"stepca-sign ", // its own row of the table
		"step-ca /sign throughput", "500.0 signs/s (500 keys)", "0.500 of the ceiling",
		"step-ca server CPU per sign", "0.500 ms", "0.50 handshakes' CPU",
		"first registration throughput", ">= step-ca's /sign rate, 0.500 of the ceiling (500.0/s, this run)",
		"first registration vs step-ca /sign (register)", "0.80 × step-ca's rate", "400.0 boots/s against 500.0 signs/s",
		"first registration vs step-ca /sign (register_dev)", "1.20 × step-ca's rate",
		"server CPU per registration vs per step-ca sign (register)", "4.00 ×", "2.000 ms against 0.500 ms",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "in the issue's run") {
		t.Errorf("report still names the issue's step-ca figure:\n%s", out.String())
	}
	want := map[string]float64{
		"stepca_sign_per_s": 500, "stepca_sign_per_ceiling_handshake": 0.5, "stepca_server_cpu_ms_per_sign": 0.5,
		"register_per_stepca_sign": 0.8, "register_dev_per_stepca_sign": 1.2,
		"register_server_cpu_per_stepca_sign": 4, "register_dev_server_cpu_per_stepca_sign": 6,
	}
	for k, v := range want {
		if summary[k] != v {
			t.Errorf("summary[%s] = %v, want %v", k, summary[k], v)
		}
	}
	met := map[string]bool{}
	for _, c := range summary["targets"].([]map[string]any) {
		met[c["target"].(string)] = c["met"].(bool)
	}
	for target, want := range map[string]bool{
		"stepca-sign: every sign succeeded":                                   true,
		"register: first registrations at least as fast as step-ca signs":     false,
		"register_dev: first registrations at least as fast as step-ca signs": true,
	} {
		if got, ok := met[target]; !ok || got != want {
			t.Errorf("target %q: met %v (present %v), want %v", target, got, ok, want)
		}
	}
}

// TestReportStepCAFailed: failed signs are a target not met, and the
// rate of the signs that succeeded stays the yardstick.
func TestReportStepCAFailed(t *testing.T) {
	results := []map[string]any{
		{"scenario": "register", "nodes": 10.0, "ok": 10.0, "throughput_per_s": 5.0, "errors": map[string]any{}},
		{"scenario": "stepca-sign", "nodes": 20.0, "ok": 18.0, "throughput_per_s": 4.0, "errors": map[string]any{"HTTP 401": 2.0}},
	}
	var out strings.Builder
	summary, err := Report(&out, results)
	if err != nil {
		t.Fatal(err)
	}
	checks := summary["targets"].([]map[string]any)
	got := map[string]map[string]any{}
	for _, c := range checks {
		got[c["target"].(string)] = c
	}
	if c := got["stepca-sign: every sign succeeded"]; c == nil || c["met"] != false || c["measured"] != "18" {
		t.Errorf("sign check %v", c)
	}
	if c := got["register: first registrations at least as fast as step-ca signs"]; c == nil || c["met"] != true ||
		c["measured"] != "5.0/s (1.25 × step-ca)" || c["note"] != "10 registrations against 20 signs" {
		t.Errorf("register check %v", c)
	}
	if summary["register_per_stepca_sign"] != 1.25 {
		t.Errorf("summary %v", summary)
	}
}
