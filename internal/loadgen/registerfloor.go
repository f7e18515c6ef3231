package loadgen

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"

	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// ScenarioRegisterFloor: each operation is what a node's first
// registration cannot do without, against a bare server that signs from
// memory. The node makes a self-signed certificate of its key and a CSR
// for it (the design has TLS prove possession of the key), opens a fresh
// mutual-TLS connection pinning the root and calls Register with its
// hostname, the CSR and its bundle key. The server signs the CSR with the
// CA's key as the CA service does (pki.Signer: the CSR's signature and
// the policy checked) and checks that it is for the key of the handshake.
// The node checks that the certificate is for its key. Everything berth
// adds is left out: the token, the store and the issuance intent, the hop
// to the CA service, the boot handed to the heartbeat service, the node's
// check of its chain and writing its files.
//
// First registrations are measured against step-ca's /sign, whose client
// proves itself with a one-time token over a TLS connection that
// authenticates only the server: one signature and one verification fewer
// per handshake, no self-signed certificate, and (in stepca-sign) CSRs
// made before the timed window, where a node makes its own as it
// registers. A floor below step-ca's rate says that no design whose
// handshake proves the node's key, as berth's must, can sign as fast on
// this machine.
const ScenarioRegisterFloor = "register-floor"

// registerFloorSeed names the register floor's simulated fleet.
const registerFloorSeed = "berth-loadgen register-floor"

// RegisterFloor measures first registrations of c.Concurrency simulated
// nodes, one each in flight, as GRPCFloor measures its calls. Each node
// registers again and again: the server keeps nothing.
func RegisterFloor(ctx context.Context, c FloorConfig) (*FloorResult, error) {
	return runNodeFloor(ctx, c, ScenarioRegisterFloor, "a node's least first registration each, against a bare server signing from memory",
		prepareRegisterFloor, (*floorNode).register)
}

// prepareRegisterFloor derives n nodes' keys as berth-agent --identity
// seed does, each pinning l's root as a node reads berth.ca_hash.
func prepareRegisterFloor(l *pki.Layout, n int) ([]*floorNode, error) {
	pin, err := mtls.ParseCAHash(l.CAHash())
	if err != nil {
		return nil, err
	}
	f, err := newFleet(registerFloorSeed)
	if err != nil {
		return nil, err
	}
	nodes := make([]*floorNode, 0, n)
	for i := range n {
		nd := f.node(i, "")
		src, err := nd.keys()
		if err != nil {
			return nodes, err
		}
		nodes = append(nodes, &floorNode{host: nd.hostname, keys: src, pin: pin})
	}
	return nodes, nil
}

// register is one first registration of n against the floor's server at
// addr.
func (n *floorNode) register(ctx context.Context, addr string) error {
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: n.host}}, n.keys.Identity())
	if err != nil {
		return err
	}
	kem, pub := keys.BundlePublic(n.keys.BundleKey())
	req := &berthv1.RegisterRequest{
		Facts: &berthv1.MachineFacts{Hostname: n.host}, Csr: csr,
		BundleKey: &berthv1.BundleKey{KemId: uint32(kem), PublicKey: pub},
	}
	return n.call(ctx, addr, func(ctx context.Context, c berthv1.RegistrationServiceClient) (*berthv1.NodeCredentials, error) {
		r, err := c.Register(ctx, req)
		return r.GetCredentials(), err
	}, n.checkRegistered)
}

// checkRegistered makes the checks a node cannot skip on its first
// certificate, given the chain the handshake verified under the pinned
// root: an approved node with a certificate for its own key.
func (n *floorNode) checkRegistered(nc *berthv1.NodeCredentials, pinned []*x509.Certificate) error {
	if len(pinned) == 0 {
		return errors.New("register floor: no verified server chain")
	}
	if nc.GetNodeId() == "" || nc.GetStatus() != berthv1.NodeStatus_NODE_STATUS_APPROVED || len(nc.GetCertificateChain()) == 0 {
		return fmt.Errorf("register floor: answer for node %q, status %v, %d certificates; want an approved node with a chain",
			nc.GetNodeId(), nc.GetStatus(), len(nc.GetCertificateChain()))
	}
	leaf, err := x509.ParseCertificate(nc.GetCertificateChain()[0])
	if err != nil {
		return fmt.Errorf("register floor: certificate: %w", err)
	}
	if !mtls.SameKey(leaf.PublicKey, n.keys.Identity().Public()) {
		return errors.New("register floor: the certificate is for another key")
	}
	return nil
}
