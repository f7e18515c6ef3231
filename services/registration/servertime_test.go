package registration

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestAnswersCarryServerTime: Register, Resume and Renew tell the node the
// server's time, by which it measures its own clock's offset.
func TestAnswersCarryServerTime(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	n := e.newNode("4c4c4544-0042-3510-8051-b2c04f4e4d90")
	tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true})
	reg, err := n.client().Register(context.Background(), n.registerRequest(t, tok))
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.GetServerTime().AsTime(); !got.Equal(e.clock.Now()) {
		t.Errorf("Register server_time = %v, want %v", got, e.clock.Now())
	}
	e.clock.Advance(time.Hour)
	nc := e.dial(tls.Certificate{Certificate: reg.GetCredentials().GetCertificateChain(), PrivateKey: n.key})
	res, err := berthv1.NewRegistrationServiceClient(nc).Resume(context.Background(), &berthv1.ResumeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.GetServerTime().AsTime(); !got.Equal(e.clock.Now()) {
		t.Errorf("Resume server_time = %v, want %v", got, e.clock.Now())
	}
	ren, err := berthv1.NewRegistrationServiceClient(nc).Renew(context.Background(), &berthv1.RenewRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ren.GetServerTime().AsTime(); !got.Equal(e.clock.Now()) {
		t.Errorf("Renew server_time = %v, want %v", got, e.clock.Now())
	}
}
