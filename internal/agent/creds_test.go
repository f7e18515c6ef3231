package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestNodeChainChecked checks the node's own chain as parseCredentials
// does after a boot handshake: from the intermediate the handshake
// verified when it can (anchorFor), in full otherwise, and both decide
// alike; the credentials then keep the intermediate for bundle signers.
func TestNodeChainChecked(t *testing.T) {
	p := newPKI(t)
	key := newKey(t)
	now := time.Now()

	// forger holds another key and issues in the intermediate's name.
	forger := newKey(t)
	fakeInter := *p.inter
	fakeInter.PublicKey = forger.Public()
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(900), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	forged := mustCert(t, leafTmpl, &fakeInter, key.Public(), forger)
	issued, err := x509.ParseCertificate(p.issue(t, key.Public(), nodeID, now, time.Hour)[0])
	if err != nil {
		t.Fatal(err)
	}
	// The same root, issued again with the same key: pinned alike, but
	// not the trust bundle's certificate.
	reissued := *p.root
	reissued.SerialNumber = big.NewInt(77)
	reissuedRoot := mustCert(t, &reissued, &reissued, p.rootKey.Public(), p.rootKey)

	// A second intermediate of the same root, as during a rotation: the
	// handshake's intermediate is not the node's.
	rotatedKey := newKey(t)
	rotatedTmpl := *p.inter
	rotatedTmpl.SerialNumber = big.NewInt(78)
	rotated := mustCert(t, &rotatedTmpl, p.root, rotatedKey.Public(), p.rootKey)
	underRotated := mustCert(t, leafTmpl, rotated, key.Public(), rotatedKey)

	// Issued by the root itself, but sent with the intermediate: the
	// anchored check refuses it and the full check, which accepts it,
	// decides.
	byRoot := mustCert(t, leafTmpl, p.root, key.Public(), p.rootKey)

	handshake := []*x509.Certificate{p.server.Leaf, p.inter, p.root}
	tests := []struct {
		name       string
		leaf       *x509.Certificate
		inter      *x509.Certificate // of the node's chain; default p.inter
		server     []*x509.Certificate
		wantAnchor bool
		noneKept   bool // the credentials keep no anchor
		wantErr    string
	}{
		{name: "issued, checked from the handshake's intermediate", leaf: issued, server: handshake, wantAnchor: true},
		{name: "issued, checked in full", leaf: issued, server: []*x509.Certificate{p.root}},
		{
			name: "forged in the intermediate's name, from the handshake's intermediate", leaf: forged, server: handshake,
			wantAnchor: true, wantErr: "does not chain to its trust bundle",
		},
		{
			name: "forged in the intermediate's name, in full", leaf: forged, server: []*x509.Certificate{p.root},
			wantErr: "does not chain to its trust bundle",
		},
		{
			name: "handshake's root not the trust bundle's certificate", leaf: issued,
			server: []*x509.Certificate{p.server.Leaf, p.inter, reissuedRoot},
		},
		{name: "issued under another intermediate than the handshake's", leaf: underRotated, inter: rotated, server: handshake},
		{name: "issued by the root, sent with the intermediate", leaf: byRoot, server: handshake, wantAnchor: true, noneKept: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inter := p.inter
			if tt.inter != nil {
				inter = tt.inter
			}
			nc := &berthv1.NodeCredentials{
				NodeId: nodeID, Status: berthv1.NodeStatus_NODE_STATUS_APPROVED,
				CertificateChain: [][]byte{tt.leaf.Raw, inter.Raw}, TrustBundle: [][]byte{p.root.Raw},
			}
			c, err := parseCredentials(nc, key.Public(), tt.server)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("parseCredentials: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("parseCredentials = %v, want %q", err, tt.wantErr)
			}
			chain := []*x509.Certificate{tt.leaf, inter}
			got := anchorFor(tt.server, &Credentials{Chain: chain, Trust: []*x509.Certificate{p.root}})
			if tt.wantAnchor != (got != nil) || got != nil && !got.Equal(p.inter) {
				t.Errorf("anchorFor = %v, want an anchor: %v", got, tt.wantAnchor)
			}
			if err == nil && !c.Leaf().Equal(tt.leaf) {
				t.Errorf("credentials hold %v, want the leaf sent", c.Leaf().Subject)
			}
			// Either way, the node's verified intermediate is what
			// bundle signers' chains are then checked from.
			switch {
			case err != nil:
			case tt.noneKept && c.anchor != nil:
				t.Errorf("credentials' anchor = %v, want none (no intermediate in the chain)", c.anchor.Subject)
			case !tt.noneKept && (c.anchor == nil || !c.anchor.Equal(inter)):
				t.Errorf("credentials' anchor = %v, want the node's intermediate", c.anchor)
			}
		})
	}
}

// TestBootHandshakeKeepsItsChain dials the registration service as a boot
// does and checks that the connection keeps the chain the pin check
// verified, and that berth's chain shape lets the node's own chain be
// checked from its intermediate.
func TestBootHandshakeKeepsItsChain(t *testing.T) {
	fake := &fakeRegistration{resume: func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		return nil, status.Error(codes.NotFound, "node not found")
	}}
	h := newHarness(t, fake)
	pin, err := mtls.ParseCAHash(h.pki.caHash())
	if err != nil {
		t.Fatal(err)
	}
	c, err := dial(Target{Server: h.addr, Pin: pin}, newKey(t), h.clock, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = berthv1.NewRegistrationServiceClient(c.cc).Resume(ctx, &berthv1.ResumeRequest{})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("Resume = %v, want NotFound from the fake", err)
	}
	got := c.watch.serverChain()
	want := []*x509.Certificate{h.pki.server.Leaf, h.pki.inter, h.pki.root}
	if len(got) != len(want) {
		t.Fatalf("the connection kept %d certificates, want %d", len(got), len(want))
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Errorf("chain[%d] is %v, want %v", i, got[i].Subject, want[i].Subject)
		}
	}
	if a := mtls.StandIn(got); a == nil || !a.Equal(h.pki.inter) {
		t.Errorf("StandIn = %v, want the intermediate", a)
	}
}

// BenchmarkBootChecks is what a node checks of the registration service at
// boot, once the handshake is done: the pinned chain the service sent
// (mtls.VerifyPinned) and its own chain (parseCredentials), the latter from
// the intermediate the first verified ("anchored", as a boot does) or in
// full under the root ("full", as before, and as when no stand-in applies).
func BenchmarkBootChecks(b *testing.B) {
	p := newPKI(b)
	key := newKey(b)
	nc := &berthv1.NodeCredentials{
		NodeId: nodeID, Status: berthv1.NodeStatus_NODE_STATUS_APPROVED,
		CertificateChain: p.issue(b, key.Public(), nodeID, time.Now(), time.Hour), TrustBundle: [][]byte{p.root.Raw},
	}
	cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{p.server.Leaf, p.inter, p.root}, ServerName: "127.0.0.1"}
	pin, err := mtls.ParseCAHash(p.caHash())
	if err != nil {
		b.Fatal(err)
	}
	for _, anchored := range []bool{true, false} {
		name := "full"
		if anchored {
			name = "anchored"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				chain, err := mtls.VerifyPinned(cs, pin)
				if err != nil {
					b.Fatal(err)
				}
				if !anchored {
					chain = chain[len(chain)-1:]
				}
				if _, err := parseCredentials(nc, key.Public(), chain); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestParseKnown: a certificate the handshake parsed already is taken
// as it is only for the very same bytes; anything else is parsed, and a
// bad one refused.
func TestParseKnown(t *testing.T) {
	p, other := newPKI(t), newPKI(t)
	known := []*x509.Certificate{p.server.Leaf, p.inter, p.root}
	for _, tt := range []struct {
		name    string
		der     []byte
		same    *x509.Certificate // the known certificate returned, or nil
		wantErr bool
	}{
		{"the handshake's intermediate", p.inter.Raw, p.inter, false},
		{"the handshake's root", p.root.Raw, p.root, false},
		{"another PKI's intermediate", other.inter.Raw, nil, false},
		{"the intermediate with a flipped signature byte", flipLast(p.inter.Raw), nil, false},
		{"not a certificate", []byte("garbage"), nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseKnown(tt.der, known)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parsed %v, want an error", got.Subject)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Raw, tt.der) {
				t.Error("returned a certificate of other bytes")
			}
			switch {
			case tt.same != nil && got != tt.same:
				t.Error("parsed again the certificate the handshake had parsed")
			case tt.same == nil && slices.Contains(known, got):
				t.Error("returned a known certificate for other bytes")
			}
		})
	}
}

func flipLast(der []byte) []byte {
	b := bytes.Clone(der)
	b[len(b)-1] ^= 1
	return b
}
