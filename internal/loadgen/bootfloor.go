package loadgen

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// ScenarioBootFloor: each operation is what a booting node cannot do
// without, against a bare server that answers Resume from memory: a
// self-signed certificate of its key (it keeps nothing between boots), a
// fresh mutual-TLS connection pinning the root, one Resume whose answer
// carries the node's chain and its sealed bundle at a storm's sizes, and
// the checks the design requires of that answer before anything is used:
// the certificate is for the node's key, and the bundle is signed by an
// admin of the trust domain, for this node and version, and opens with
// the node's bundle key. Everything berth adds is left out: the store,
// the server's authorisation, the node's check of its own chain, and
// writing the files. So no boot can do better on this machine, and a goal
// beyond this floor is out of reach whatever berth does.
const ScenarioBootFloor = "boot-floor"

// bootFloorDir holds, under the floor's PKI directory, each node's answer
// for the server to load: KEYHASH.pb, a marshalled NodeCredentials, KEYHASH
// the hex SHA-256 of the node's identity key.
const bootFloorDir = "boot-floor"

// bootFloorSeed names the boot floor's simulated fleet.
const bootFloorSeed = "berth-loadgen boot-floor"

// BootFloor measures boots of c.Concurrency simulated nodes, one each in
// flight, as GRPCFloor measures its calls.
func BootFloor(ctx context.Context, c FloorConfig) (*FloorResult, error) {
	return runNodeFloor(ctx, c, ScenarioBootFloor, "a node's least boot each, against a bare server answering Resume from memory",
		func(l *pki.Layout, n int) ([]*floorNode, error) { return prepareBootFloor(ctx, l, n) }, (*floorNode).boot)
}

// runNodeFloor measures a floor of simulated nodes against its own bare
// server, as GRPCFloor measures its calls: prepare makes c.Concurrency
// nodes once the floor's PKI exists (those it made are closed even when
// it fails), and op is one operation of a node against the server at
// addr, one per node in flight.
func runNodeFloor(ctx context.Context, c FloorConfig, scenario, what string,
	prepare func(l *pki.Layout, n int) ([]*floorNode, error), op func(n *floorNode, ctx context.Context, addr string) error) (*FloorResult, error) {
	c.setDefaults(DefaultCeilingDuration)
	var nodes []*floorNode
	defer func() {
		for _, n := range nodes {
			n.keys.Close()
		}
	}()
	srv, _, cleanup, err := startFloor(ctx, c, scenario, mtls.ServiceRegistration, func(l *pki.Layout) (err error) {
		nodes, err = prepare(l, c.Concurrency)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer cleanup()
	c.Log.Info(scenario+": "+what, "concurrency", c.Concurrency, "duration", c.Duration)
	return measureOps(ctx, c, srv, scenario, func(ctx context.Context, w int) error {
		return op(nodes[w%len(nodes)], ctx, srv.addr)
	})
}

// floorNode is a simulated node of the boot floor: its keys, and what its
// boot must find.
type floorNode struct {
	id   string
	host string // the register floor's: its facts' hostname
	keys keys.Source
	pin  [32]byte
}

// prepareBootFloor makes n nodes: keys derived as berth-agent --identity
// seed derives them, a certificate issued by the PKI's CA and a bundle
// sealed to the node and signed by the PKI's admin, written as the node's
// answer for the server (bootFloorDir).
func prepareBootFloor(ctx context.Context, l *pki.Layout, n int) ([]*floorNode, error) {
	ca, err := floorSigner(l)
	if err != nil {
		return nil, err
	}
	cert, err := l.AdminCertificate()
	if err != nil {
		return nil, err
	}
	admin, err := bundleSigner(cert)
	if err != nil {
		return nil, err
	}
	f, err := newFleet(bootFloorSeed)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(l.Dir, bootFloorDir)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	pin, err := mtls.ParseCAHash(l.CAHash()) // as a node reads berth.ca_hash
	if err != nil {
		return nil, err
	}
	nodes := make([]*floorNode, 0, n)
	for i := range n {
		nd := f.node(i, "")
		nd.id = ident.NewNodeID()
		fn, answer, err := floorAnswer(ctx, nd, ca, admin)
		if err != nil {
			return nodes, fmt.Errorf("boot floor: node %d: %w", i, err)
		}
		fn.pin = pin
		nodes = append(nodes, fn)
		answer.TrustBundle = [][]byte{l.Root.Raw}
		b, err := proto.Marshal(answer)
		if err != nil {
			return nodes, err
		}
		sum, err := mtls.KeyHash(fn.keys.Identity().Public())
		if err != nil {
			return nodes, err
		}
		if err := os.WriteFile(filepath.Join(dir, hex.EncodeToString(sum[:])+".pb"), b, 0o600); err != nil {
			return nodes, err
		}
	}
	return nodes, nil
}

// floorSigner is the CA of a floor's PKI, signing as the CA service does.
func floorSigner(l *pki.Layout) (*pki.Signer, error) {
	sc, err := l.SignerConfig()
	if err != nil {
		return nil, err
	}
	return pki.NewSigner(sc)
}

// floorAnswer issues nd's certificate and seals its bundle: the node, and
// the credentials a Resume answers it with (without the trust bundle).
func floorAnswer(ctx context.Context, nd *node, ca *pki.Signer, admin *bundle.Signer) (*floorNode, *berthv1.NodeCredentials, error) {
	src, err := nd.keys()
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*floorNode, *berthv1.NodeCredentials, error) {
		src.Close()
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, src.Identity())
	if err != nil {
		return fail(err)
	}
	signed, err := ca.Sign(ctx, pki.SignRequest{NodeID: nd.id, Hostname: nd.hostname, CSR: csr})
	if err != nil {
		return fail(err)
	}
	const version = 1
	sealed, err := nd.sealWith(src, version, admin)
	if err != nil {
		return fail(err)
	}
	kem, _ := keys.BundlePublic(src.BundleKey())
	return &floorNode{id: nd.id, keys: src}, &berthv1.NodeCredentials{
		NodeId:            nd.id,
		Status:            berthv1.NodeStatus_NODE_STATUS_APPROVED,
		CertificateChain:  signed.Chain,
		BundleChecked:     true,
		Bundle:            &berthv1.SealedBundle{Info: &berthv1.BundleInfo{NodeId: nd.id, Version: version, KemId: uint32(kem)}, Sealed: sealed},
		HeartbeatInterval: durationpb.New(DefaultFloorInterval),
	}, nil
}

// boot is one boot of n against the floor's server at addr.
func (n *floorNode) boot(ctx context.Context, addr string) error {
	return n.call(ctx, addr, func(ctx context.Context, c berthv1.RegistrationServiceClient) (*berthv1.NodeCredentials, error) {
		r, err := c.Resume(ctx, &berthv1.ResumeRequest{})
		return r.GetCredentials(), err
	}, n.check)
}

// call makes one call of the registration service at addr as n (dial),
// within ackTimeout, and judges its answer with check, given the server
// chain the handshake verified.
func (n *floorNode) call(ctx context.Context, addr string, rpc func(context.Context, berthv1.RegistrationServiceClient) (*berthv1.NodeCredentials, error),
	check func(*berthv1.NodeCredentials, []*x509.Certificate) error) error {
	cc, pinned, err := n.dial(addr)
	if err != nil {
		return err
	}
	defer cc.Close()
	cctx, cancel := context.WithTimeout(ctx, ackTimeout)
	defer cancel()
	nc, err := rpc(cctx, berthv1.NewRegistrationServiceClient(cc))
	if err != nil {
		return err
	}
	return check(nc, pinned())
}

// dial connects to the registration server at addr as a node does, which
// keeps nothing between boots: with a fresh self-signed certificate of its
// key, over a fresh mutual-TLS connection that pins the root. pinned
// returns the server chain the handshake verified.
func (n *floorNode) dial(addr string) (cc *grpc.ClientConn, pinned func() []*x509.Certificate, err error) {
	self, err := mtls.SelfSigned(n.keys.Identity())
	if err != nil {
		return nil, nil, err
	}
	var (
		mu    sync.Mutex
		chain []*x509.Certificate
	)
	cfg := mtls.PinnedClientConfig(self, n.pin, "127.0.0.1")
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		c, err := mtls.VerifyPinned(cs, n.pin)
		mu.Lock()
		chain = c
		mu.Unlock()
		return err
	}
	cc, err = rpc.Dial(rpc.ClientConfig{Addr: addr, TLS: mtls.ExpectServer(cfg, "", mtls.ServiceRegistration)})
	if err != nil {
		return nil, nil, err
	}
	return cc, func() []*x509.Certificate {
		mu.Lock()
		defer mu.Unlock()
		return chain
	}, nil
}

// check makes the checks a node cannot skip on its answer, given the
// chain the handshake verified under the pinned root.
func (n *floorNode) check(nc *berthv1.NodeCredentials, pinned []*x509.Certificate) error {
	if len(pinned) == 0 {
		return errors.New("boot floor: no verified server chain")
	}
	if nc.GetNodeId() != n.id || nc.GetStatus() != berthv1.NodeStatus_NODE_STATUS_APPROVED || len(nc.GetCertificateChain()) == 0 {
		return fmt.Errorf("boot floor: answer for node %q, status %v, %d certificates; want approved node %q with a chain",
			nc.GetNodeId(), nc.GetStatus(), len(nc.GetCertificateChain()), n.id)
	}
	leaf, err := x509.ParseCertificate(nc.GetCertificateChain()[0])
	if err != nil {
		return fmt.Errorf("boot floor: certificate: %w", err)
	}
	if !mtls.SameKey(leaf.PublicKey, n.keys.Identity().Public()) {
		return errors.New("boot floor: the certificate is for another key")
	}
	sb := nc.GetBundle()
	if sb == nil {
		return errors.New("boot floor: no bundle")
	}
	roots := x509.NewCertPool()
	roots.AddCert(pinned[len(pinned)-1])
	_, err = bundle.Open(n.keys.BundleKey(), sb.GetSealed(), bundle.Verifier{
		TrustDomain: mtls.TrustDomainOf(leaf),
		NodeID:      n.id,
		Version:     sb.GetInfo().GetVersion(),
		Roots:       roots,
		Anchor:      mtls.StandIn(pinned),
		NodeKey:     n.keys.Identity().Public(),
	})
	if err != nil {
		return fmt.Errorf("boot floor: %w", err)
	}
	return nil
}
