package crl

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/pki"
)

// log is a revocation log the test writes, counting its reads.
type log struct {
	mu      sync.Mutex
	entries []Entry
	err     error
	reads   int
}

func (l *log) source(context.Context) ([]Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reads++
	return append([]Entry(nil), l.entries...), l.err
}

func (l *log) add(e Entry) { l.mu.Lock(); l.entries = append(l.entries, e); l.mu.Unlock() }
func (l *log) fail(err error) {
	l.mu.Lock()
	l.err = err
	l.mu.Unlock()
}
func (l *log) readCount() int { l.mu.Lock(); defer l.mu.Unlock(); return l.reads }

// fixture is a real PKI (berthd init) and a publisher on a fake clock.
type fixture struct {
	layout *pki.Layout
	sc     pki.SignerConfig
	clk    *clock.Fake
	log    *log
	pub    *Publisher
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	layout, err := pki.Init(context.Background(), pki.InitConfig{Dir: filepath.Join(t.TempDir(), "pki")})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := layout.SignerConfig()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{layout: layout, sc: sc, clk: clock.NewFake(time.Now().UTC().Truncate(time.Second)), log: &log{}}
	f.pub = f.publisher(t)
	return f
}

func (f *fixture) publisher(t *testing.T) *Publisher {
	t.Helper()
	p, err := New(Config{Issuer: f.sc.Intermediate, Key: f.sc.Key, Source: f.log.source, Clock: f.clk})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// parse parses and verifies a CRL against the intermediate.
func (f *fixture) parse(t *testing.T, c CRL) *x509.RevocationList {
	t.Helper()
	rl, err := x509.ParseRevocationList(c.DER)
	if err != nil {
		t.Fatalf("parse CRL: %v", err)
	}
	if err := rl.CheckSignatureFrom(f.sc.Intermediate); err != nil {
		t.Fatalf("CRL signature: %v", err)
	}
	return rl
}

func TestCRLContents(t *testing.T) {
	f := newFixture(t)
	at := f.clk.Now().Add(-time.Hour)
	f.log.add(Entry{Serial: "1a2b3c", RevokedAt: at, Reason: "stolen"})
	f.log.add(Entry{Serial: "00ff", RevokedAt: at.Add(time.Minute), Reason: ReasonSuperseded})
	c, err := f.pub.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rl := f.parse(t, c)
	if rl.Issuer.String() != f.sc.Intermediate.Subject.String() {
		t.Errorf("issuer %q, want the intermediate %q", rl.Issuer, f.sc.Intermediate.Subject)
	}
	if !rl.ThisUpdate.Equal(f.clk.Now()) || !rl.NextUpdate.Equal(f.clk.Now().Add(DefaultValidity)) {
		t.Errorf("thisUpdate %v nextUpdate %v, want now and now+%v", rl.ThisUpdate, rl.NextUpdate, DefaultValidity)
	}
	if rl.Number.Cmp(big.NewInt(f.clk.Now().UnixMicro())) != 0 || rl.Number.Cmp(c.Number) != 0 {
		t.Errorf("CRL number %v (reported %v), want the time in microseconds %d", rl.Number, c.Number, f.clk.Now().UnixMicro())
	}
	if len(rl.AuthorityKeyId) == 0 || string(rl.AuthorityKeyId) != string(f.sc.Intermediate.SubjectKeyId) {
		t.Error("CRL does not name the intermediate's key")
	}
	want := map[string]int{"1a2b3c": 0, "ff": 4}
	if len(rl.RevokedCertificateEntries) != 2 || c.Entries != 2 {
		t.Fatalf("%d entries, want 2", len(rl.RevokedCertificateEntries))
	}
	for _, e := range rl.RevokedCertificateEntries {
		reason, ok := want[e.SerialNumber.Text(16)]
		if !ok || e.ReasonCode != reason {
			t.Errorf("entry %s reason %d, want one of %v", e.SerialNumber.Text(16), e.ReasonCode, want)
		}
		if e.RevocationTime.Before(at.Add(-time.Second)) || e.RevocationTime.After(at.Add(time.Minute+time.Second)) {
			t.Errorf("entry %s revoked at %v, want about %v", e.SerialNumber.Text(16), e.RevocationTime, at)
		}
	}
}

// TestCurrentCaching: the log is read at most once per CheckInterval; an
// unchanged log keeps the same CRL, a changed one gets a new CRL with a
// larger number at once, and an old CRL is re-signed when due.
func TestCurrentCaching(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	first, err := f.pub.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if first.Entries != 0 {
		t.Fatalf("empty log gave %d entries", first.Entries)
	}
	f.parse(t, first)
	for range 100 {
		if c, _ := f.pub.Current(ctx); string(c.DER) != string(first.DER) {
			t.Fatal("CRL changed without a change in the log")
		}
	}
	if n := f.log.readCount(); n != 1 {
		t.Fatalf("log read %d times within the check interval, want 1", n)
	}
	// A revocation through another replica shows up after the interval.
	f.log.add(Entry{Serial: "abc", RevokedAt: f.clk.Now()})
	f.clk.Advance(DefaultCheckInterval)
	second, err := f.pub.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second.Entries != 1 || second.Number.Cmp(first.Number) <= 0 {
		t.Fatalf("after a revocation: %d entries, number %v after %v", second.Entries, second.Number, first.Number)
	}
	// Checked again with nothing new: same CRL.
	f.clk.Advance(DefaultCheckInterval)
	if c, _ := f.pub.Current(ctx); string(c.DER) != string(second.DER) {
		t.Fatal("CRL re-signed although nothing changed and it is not due")
	}
	// Due for refresh: re-signed with the same entries, a later date and a
	// larger number.
	f.clk.Advance(DefaultRefresh)
	third, err := f.pub.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if third.Entries != 1 || !third.ThisUpdate.After(second.ThisUpdate) || third.Number.Cmp(second.Number) <= 0 {
		t.Fatalf("refresh: %d entries, thisUpdate %v (was %v), number %v (was %v)", third.Entries, third.ThisUpdate, second.ThisUpdate, third.Number, second.Number)
	}
}

// TestRefreshNumbersIncrease: CRLs signed within one microsecond, or after
// the clock went back, still get increasing numbers; a CRL listing a
// revocation dated ahead of the clock (another replica's) is numbered
// after it.
func TestRefreshNumbersIncrease(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var prev *big.Int
	for i := range 3 {
		c, err := f.pub.resign(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if prev != nil && c.Number.Cmp(prev) <= 0 {
			t.Fatalf("refresh %d: number %v not above %v", i, c.Number, prev)
		}
		prev = c.Number
	}
	f.clk.Advance(-time.Minute)
	if c, _ := f.pub.resign(ctx); c.Number.Cmp(prev) <= 0 {
		t.Fatalf("after the clock went back: number %v not above %v", c.Number, prev)
	}
	ahead := f.clk.Now().Add(time.Hour)
	f.log.add(Entry{Serial: "1", RevokedAt: ahead})
	// A fresh publisher, as on another replica or after a restart.
	c, err := f.publisher(t).resign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Number.Cmp(big.NewInt(ahead.UnixMicro())) < 0 {
		t.Fatalf("number %v is below the newest revocation's time %d", c.Number, ahead.UnixMicro())
	}
}

// TestLogUnreadable: while the log cannot be read, the CRL held is served
// until its nextUpdate; then, and without one, Current fails.
func TestLogUnreadable(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	down := errors.New("database is down")
	f.log.fail(down)
	if _, err := f.pub.Current(ctx); !errors.Is(err, ErrNotPublished) || !errors.Is(err, down) {
		t.Fatalf("no CRL and no log: %v, want ErrNotPublished wrapping the cause", err)
	}
	f.log.fail(nil)
	held, err := f.pub.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.log.fail(down)
	f.clk.Advance(DefaultRefresh)
	if c, err := f.pub.Current(ctx); err != nil || string(c.DER) != string(held.DER) {
		t.Fatalf("log down, CRL valid: %v, want the held CRL", err)
	}
	if _, err := f.pub.Refresh(ctx); !errors.Is(err, down) {
		t.Fatalf("Refresh with the log down: %v", err)
	}
	f.clk.Set(held.NextUpdate)
	if _, err := f.pub.Current(ctx); !errors.Is(err, ErrNotPublished) {
		t.Fatalf("log down, CRL expired: %v, want ErrNotPublished", err)
	}
}

// TestRefresh: Refresh lists a new revocation at once, and signs nothing
// when the log did not change.
func TestRefresh(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	first, err := f.pub.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.log.add(Entry{Serial: "beef", RevokedAt: f.clk.Now()})
	if c, _ := f.pub.Current(ctx); c.Entries != 0 {
		t.Fatal("Current read the log within the check interval")
	}
	second, err := f.pub.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second.Entries != 1 || second.Number.Cmp(first.Number) <= 0 {
		t.Fatalf("Refresh after a revocation: %d entries, number %v after %v", second.Entries, second.Number, first.Number)
	}
	if c, _ := f.pub.Current(ctx); string(c.DER) != string(second.DER) {
		t.Fatal("Current does not hand out the refreshed CRL")
	}
	if again, _ := f.pub.Refresh(ctx); string(again.DER) != string(second.DER) {
		t.Fatal("Refresh re-signed an unchanged log")
	}
}

func TestBadSerialInLog(t *testing.T) {
	f := newFixture(t)
	f.log.add(Entry{Serial: "not-hex", RevokedAt: f.clk.Now()})
	if _, err := f.pub.Refresh(context.Background()); err == nil || !strings.Contains(err.Error(), "not a positive hexadecimal") {
		t.Fatalf("Refresh with a bad serial: %v", err)
	}
	f.log.mu.Lock()
	f.log.entries[0].Serial = "0"
	f.log.mu.Unlock()
	if _, err := f.pub.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh accepted serial 0")
	}
}

func TestNewChecks(t *testing.T) {
	f := newFixture(t)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "leaf"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.sc.Intermediate, leafKey.Public(), f.sc.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	for _, tt := range []struct {
		name string
		c    Config
		want string
	}{
		{"no issuer", Config{Key: f.sc.Key, Source: f.log.source}, "required"},
		{"no source", Config{Issuer: f.sc.Intermediate, Key: f.sc.Key}, "Source is required"},
		{"issuer cannot sign CRLs", Config{Issuer: leaf, Key: leafKey, Source: f.log.source}, "cRLSign"},
		{"refresh not below validity", Config{Issuer: f.sc.Intermediate, Key: f.sc.Key, Source: f.log.source, Refresh: time.Hour, Validity: time.Hour}, "shorter"},
	} {
		if _, err := New(tt.c); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}

// TestRun: Run signs at once and again every Refresh period.
func TestRun(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.pub.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	f.clk.BlockUntil(1)
	first, _ := f.pub.Current(ctx)
	f.clk.Advance(DefaultRefresh)
	f.clk.BlockUntil(1)
	second, _ := f.pub.Current(ctx)
	if !second.ThisUpdate.After(first.ThisUpdate) {
		t.Fatalf("Run did not re-sign after the refresh period: %v then %v", first.ThisUpdate, second.ThisUpdate)
	}
}

// TestOpenSSL: OpenSSL reads the CRL and, with it, refuses a revoked node
// certificate and accepts a good one; Go's verifier agrees on the
// signature.
func TestOpenSSL(t *testing.T) {
	f := newFixture(t)
	signer, err := pki.NewSigner(f.sc)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(id string) *x509.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		if err != nil {
			t.Fatal(err)
		}
		s, err := signer.Sign(context.Background(), pki.SignRequest{NodeID: id, Hostname: "node-" + id, CSR: csr})
		if err != nil {
			t.Fatal(err)
		}
		return s.Leaf
	}
	revoked, good := issue("aaaaaaaaaaaaaaaaaaaaaaaaaa"), issue("bbbbbbbbbbbbbbbbbbbbbbbbbb")
	f.log.add(Entry{Serial: revoked.SerialNumber.Text(16), RevokedAt: time.Now().Add(-time.Minute), Reason: "stolen"})
	c, err := f.pub.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, blocks ...*pem.Block) string {
		var b []byte
		for _, bl := range blocks {
			b = append(b, pem.EncodeToMemory(bl)...)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert := func(c *x509.Certificate) *pem.Block { return &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw} }
	chain := write("chain.pem", cert(f.layout.Root), cert(f.sc.Intermediate))
	crlPEM := write("node.crl", &pem.Block{Type: "X509 CRL", Bytes: c.DER})
	crlDER := filepath.Join(dir, "node.crl.der")
	if err := os.WriteFile(crlDER, c.DER, 0o600); err != nil {
		t.Fatal(err)
	}

	out := openssl(t, "crl", "-inform", "DER", "-in", crlDER, "-noout", "-text")
	for _, want := range []string{"Version 2", "X509v3 CRL Number", "X509v3 Authority Key Identifier",
		"Serial Number: " + hex.EncodeToString(revoked.SerialNumber.Bytes()), "CN = " + f.sc.Intermediate.Subject.CommonName} {
		if !strings.Contains(strings.ToUpper(out), strings.ToUpper(want)) {
			t.Errorf("openssl crl -text lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(strings.ToUpper(out), strings.ToUpper(hex.EncodeToString(good.SerialNumber.Bytes()))) {
		t.Error("the good certificate is listed")
	}
	verify := func(c *x509.Certificate) (string, error) {
		cmd := exec.Command("openssl", "verify", "-crl_check", "-CAfile", chain, "-CRLfile", crlPEM, write(c.SerialNumber.Text(16)+".pem", cert(c)))
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if out, err := verify(good); err != nil || !strings.Contains(out, ": OK") {
		t.Errorf("openssl verify of the good certificate: %v\n%s", err, out)
	}
	if out, err := verify(revoked); err == nil || !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl verify of the revoked certificate: %v, want 'certificate revoked'\n%s", err, out)
	}
}

func openssl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
