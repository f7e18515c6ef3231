package agent

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func TestResultJSONShape(t *testing.T) {
	notAfter := time.Date(2027, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))
	leaf := &x509.Certificate{SerialNumber: big.NewInt(0xABCDEF0123), NotAfter: notAfter}
	r := newResult(&Credentials{NodeID: "n-1", Status: berthv1.NodeStatus_NODE_STATUS_APPROVED, Chain: []*x509.Certificate{leaf}}, ActionResumed)
	var buf bytes.Buffer
	if err := r.Write(&buf, OutputJSON); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Errorf("JSON output spans %d lines, want one object on one line", n)
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"node_id":        "n-1",
		"status":         "approved",
		"action":         "resumed",
		"cert_serial":    "abcdef0123",
		"cert_not_after": "2027-03-04T04:06:07Z",
		"bundle_version": float64(0),
		"files_applied":  float64(0),
		"renewed":        false,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if _, err := time.Parse(time.RFC3339, got["cert_not_after"].(string)); err != nil {
		t.Errorf("cert_not_after is not RFC 3339: %v", err)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected field %q", k)
		}
	}
}

func TestResultText(t *testing.T) {
	tests := []struct {
		r    Result
		want string
	}{
		{Result{NodeID: "n-1", Status: "approved", Action: "registered", CertSerial: "ab", CertNotAfter: "2027-01-01T00:00:00Z", CertDir: "/run/berth"},
			"node n-1 approved (registered): certificate ab valid until 2027-01-01T00:00:00Z, credentials in /run/berth\n"},
		{Result{NodeID: "n-1", Status: "pending", Action: "resumed"}, "node n-1 is pending approval (resumed)\n"},
		{Result{NodeID: "n-1", Status: "revoked"}, "node n-1 is revoked\n"},
		{Result{NodeID: "n-1", Status: "approved", Action: "resumed", CertSerial: "ab", CertNotAfter: "2027-01-01T00:00:00Z", CertDir: "/run/berth",
			Bundle: BundleNone, Heartbeat: HeartbeatAcked, HeartbeatInterval: 9.5},
			"node n-1 approved (resumed): certificate ab valid until 2027-01-01T00:00:00Z, credentials in /run/berth\nno bundle\nheartbeat acknowledged, interval 9.5s\n"},
		// No heartbeat endpoint says nothing in text: the log tells.
		{Result{NodeID: "n-1", Status: "approved", Action: "resumed", CertSerial: "ab", CertNotAfter: "2027-01-01T00:00:00Z", CertDir: "/run/berth",
			Heartbeat: HeartbeatNone},
			"node n-1 approved (resumed): certificate ab valid until 2027-01-01T00:00:00Z, credentials in /run/berth\n"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		if err := tt.r.Write(&buf, OutputText); err != nil {
			t.Fatal(err)
		}
		if buf.String() != tt.want {
			t.Errorf("text = %q, want %q", buf.String(), tt.want)
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	old := syscall.Umask(0o077) // the mode must not depend on the umask
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "node.crt")
	for i, content := range []string{"first", "second, longer content"} {
		if err := WriteFileAtomic(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != content {
			t.Errorf("write %d: content = %q", i, b)
		}
		st, _ := os.Stat(path)
		if st.Mode().Perm() != 0o644 {
			t.Errorf("write %d: mode = %04o, want 0644", i, st.Mode().Perm())
		}
	}
	if err := WriteFileAtomic(filepath.Join(dir, "node.key"), []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "node.key")); st.Mode().Perm() != 0o600 {
		t.Errorf("key mode = %04o, want 0600", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"node.crt", "node.key"}) {
		t.Errorf("directory holds %v, want no temporary files left", names)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "x"), nil, 0o644); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

func TestWriteCredentialsWithoutExportableKey(t *testing.T) {
	p := newPKI(t)
	src := testKeys(t)
	dir := filepath.Join(t.TempDir(), "run", "berth")
	creds := &Credentials{Trust: []*x509.Certificate{p.root}}
	for _, der := range p.issue(t, src.Identity().Public(), "n", time.Now(), time.Hour) {
		c, _ := x509.ParseCertificate(der)
		creds.Chain = append(creds.Chain, c)
	}
	if err := WriteCredentials(dir, creds, src.Identity()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil {
		t.Fatalf("node.key missing: %v", err)
	}
	// A TPM-held key is not written, and a stale copy is removed.
	if err := WriteCredentials(dir, creds, tpmLike{src.Identity()}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, KeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("node.key still there for a non-exportable key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, CertFile)); err != nil {
		t.Errorf("node.crt missing: %v", err)
	}
}

// tpmLike is a signer whose private half cannot be exported.
type tpmLike struct{ crypto.Signer }

func TestBackoffBounds(t *testing.T) {
	b := Backoff{Initial: 250 * time.Millisecond, Max: 10 * time.Second}
	wantCeil := []time.Duration{
		250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
		4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second,
	}
	for n, want := range wantCeil {
		if got := b.Ceiling(n); got != want {
			t.Errorf("Ceiling(%d) = %s, want %s", n, got, want)
		}
	}
	if got := b.Ceiling(1 << 20); got != b.Max {
		t.Errorf("Ceiling(huge) = %s, want the cap", got)
	}
	top := b
	top.Rand = func(n int64) int64 { return n - 1 }
	bottom := b
	bottom.Rand = func(int64) int64 { return 0 }
	for n := range 64 {
		if got := top.Delay(n); got != b.Ceiling(n) {
			t.Errorf("Delay(%d) at the top of the jitter = %s, want %s", n, got, b.Ceiling(n))
		}
		if got := bottom.Delay(n); got != MinDelay {
			t.Errorf("Delay(%d) at the bottom of the jitter = %s, want %s", n, got, MinDelay)
		}
		if got := b.Delay(n); got < MinDelay || got > b.Ceiling(n) {
			t.Errorf("Delay(%d) = %s, outside [%s, %s]", n, got, MinDelay, b.Ceiling(n))
		}
	}
	if d := (Backoff{}).Ceiling(100); d != DefaultBackoff.Max {
		t.Errorf("zero Backoff caps at %s, want the default %s", d, DefaultBackoff.Max)
	}
}

func TestWaiterStopsAtDeadline(t *testing.T) {
	for _, wait := range []time.Duration{0, 100 * time.Millisecond, 3 * time.Second, time.Minute} {
		clock := newFakeClock()
		w := &waiter{clock: clock, backoff: Backoff{Rand: func(n int64) int64 { return n - 1 }}.withDefaults(),
			deadline: clock.Now().Add(wait), log: slog.New(slog.DiscardHandler)}
		for {
			ok, err := w.wait(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
		}
		if _, total := clock.Slept(); total != wait {
			t.Errorf("wait %s: slept %s in all", wait, total)
		}
		for _, d := range clock.sleeps {
			if d > DefaultBackoff.Max {
				t.Errorf("wait %s: one sleep of %s, above the cap", wait, d)
			}
		}
	}
}

func TestCertHolder(t *testing.T) {
	p := newPKI(t)
	src := testKeys(t)
	clock := newFakeClock()
	h := &certHolder{key: src.Identity(), now: clock.Now}
	self, err := h.get(nil)
	if err != nil {
		t.Fatal(err)
	}
	if self.Leaf.CheckSignature(self.Leaf.SignatureAlgorithm, self.Leaf.RawTBSCertificate, self.Leaf.Signature) != nil || !mtls.SameKey(self.Leaf.PublicKey, src.Identity().Public()) {
		t.Fatal("first certificate is not self-signed")
	}
	creds := &Credentials{}
	for _, der := range p.issue(t, src.Identity().Public(), "n", clock.Now(), time.Hour) {
		c, _ := x509.ParseCertificate(der)
		creds.Chain = append(creds.Chain, c)
	}
	h.setIssued(creds)
	got, _ := h.get(nil)
	if !got.Leaf.Equal(creds.Leaf()) || len(got.Certificate) != 2 {
		t.Error("a valid issued certificate is not presented with its chain")
	}
	clock.mu.Lock()
	clock.now = clock.now.Add(2 * time.Hour)
	clock.mu.Unlock()
	got, _ = h.get(nil)
	if got.Leaf.Equal(creds.Leaf()) || !mtls.SameKey(got.Leaf.PublicKey, src.Identity().Public()) {
		t.Error("an expired issued certificate is still presented")
	}
}
