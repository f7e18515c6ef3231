package registration

import (
	"bytes"
	"testing"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"

	"github.com/berth-dev/berth/internal/agent"
	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/tpm/tpmtest"
)

// BenchmarkBootIdentity is one boot of an already registered node, as
// berth-agent --once runs it: open the keys (for tpm: connect to the
// swtpm and recreate the three primary keys), TLS handshake signed by the
// identity key, Resume, write the credentials. seed-file against tpm is
// what holding the key in a TPM costs a boot.
func BenchmarkBootIdentity(b *testing.B) {
	for _, source := range []keys.Assurance{keys.AssuranceSeedFile, keys.AssuranceTPM} {
		b.Run(string(source), func(b *testing.B) {
			e := newEnv(b, sqliteBackend)
			sim := tpmtest.Start(b)
			open := func() keys.Source {
				cfg := keys.Config{Kind: keys.KindTPM, TPMDevice: sim.Device()}
				if source != keys.AssuranceTPM {
					return seedSource(b)
				}
				src, err := keys.Open(b.Context(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				return src
			}
			tok := e.token(b, &berthv1.CreateTokenRequest{AutoApprove: true})
			src := open()
			first := e.bootWith(b, src, source, b.TempDir(), tok, uuidN(99))
			src.Close()
			b.ResetTimer()
			for b.Loop() {
				src := open()
				r := e.bootWith(b, src, source, b.TempDir(), "", uuidN(99))
				src.Close()
				if r.Action != agent.ActionResumed || r.NodeID != first.NodeID {
					b.Fatalf("boot = %+v, want node %s resumed", r, first.NodeID)
				}
			}
		})
	}
}

func seedSource(b testing.TB) keys.Source {
	src, err := keys.NewSeed(bytes.Repeat([]byte{7}, keys.MinSeedSize), nil)
	if err != nil {
		b.Fatal(err)
	}
	return src
}

// BenchmarkTPMRegister is a TPM node's registration with an enrolled EK:
// the evidence, the credential made under the EK, its activation in the
// swtpm, the second call and the first certificate. The node is deleted
// between iterations (not timed) so that each one registers anew.
//
// identity-only is an agent before boot evidence: one credential.
// with-ak is today's agent: credentials for the identity key and the AK,
// both activated, then the boot quoted and Resume with the quote, which
// returns the certificate.
func BenchmarkTPMRegister(b *testing.B) {
	for _, withAK := range []bool{false, true} {
		name := "identity-only"
		if withAK {
			name = "with-ak"
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b, sqliteBackend)
			n := e.tpmNode(b, tpmtest.Start(b), uuidN(98))
			if _, err := e.adminClient().ImportEKs(b.Context(), &berthv1.ImportEKsRequest{
				Eks: []*berthv1.EnrolledEK{{Hash: ekHashOf(b, n.tpm)}}}); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				var creds *berthv1.NodeCredentials
				if withAK {
					resp, err := n.registerAK(b, n.akRequest(b, ""))
					if err != nil || resp.GetQuoteChallenge() == nil {
						b.Fatalf("register = %v, %v", resp, err)
					}
					rr, err := n.resumeWith(b, quoteWith(b, n.tpm, resp.GetQuoteChallenge().GetNonce(), DefaultBootPCRs()))
					if err != nil {
						b.Fatal(err)
					}
					creds = rr.GetCredentials()
				} else {
					resp, err := n.register(b, n.request(b, ""))
					if err != nil {
						b.Fatal(err)
					}
					creds = resp.GetCredentials()
				}
				if creds.GetStatus() != berthv1.NodeStatus_NODE_STATUS_APPROVED || len(creds.GetCertificateChain()) == 0 {
					b.Fatalf("registration gave %v", creds)
				}
				b.StopTimer()
				if _, err := e.adminClient().DeleteNode(b.Context(), &berthv1.DeleteNodeRequest{Id: creds.GetNodeId()}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkResumeQuote is one Resume of an approved, registered node on an
// open connection, handshake excluded: seed-file is one call; tpm-no-ak
// (a node an agent before boot evidence registered) is one call too;
// tpm-quote is Resume, the quote of PCRs 0-7 and 9 in the swtpm, and
// Resume with the quote, which verifies it and records the boot (one
// write). The difference is what quoting costs a boot.
func BenchmarkResumeQuote(b *testing.B) {
	b.Run("seed-file", func(b *testing.B) {
		e := newEnv(b, sqliteBackend)
		n := e.newNode(uuidN(97))
		e.register(b, n, true)
		for b.Loop() {
			resp, err := n.client().Resume(b.Context(), &berthv1.ResumeRequest{})
			if err != nil || resp.GetCredentials() == nil {
				b.Fatalf("Resume = %v, %v", resp, err)
			}
		}
	})
	for _, withAK := range []bool{false, true} {
		name := "tpm-no-ak"
		if withAK {
			name = "tpm-quote"
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b, sqliteBackend)
			n := e.tpmNode(b, tpmtest.Start(b), uuidN(96))
			tok := e.token(b, &berthv1.CreateTokenRequest{AutoApprove: true})
			req := n.request(b, tok)
			if withAK {
				if _, err := n.registerAK(b, n.akRequest(b, tok)); err != nil {
					b.Fatal(err)
				}
			} else if _, err := n.register(b, req); err != nil {
				b.Fatal(err)
			}
			c := berthv1.NewRegistrationServiceClient(n.conn)
			for b.Loop() {
				resp, err := c.Resume(b.Context(), &berthv1.ResumeRequest{})
				if err == nil && resp.GetQuoteChallenge() != nil {
					ch := resp.GetQuoteChallenge()
					resp, err = n.resumeWith(b, quoteWith(b, n.tpm, ch.GetNonce(), DefaultBootPCRs()))
				}
				if err != nil || resp.GetCredentials() == nil {
					b.Fatalf("Resume = %v, %v", resp, err)
				}
			}
		})
	}
}
