package loadgen

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/rpc"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Conn says how to reach berth's services and with which admin
// credentials, as berthctl does (--server, --ca, --cert, --key and the
// BERTH_* environment).
type Conn struct {
	// Server is the registration service: where the nodes boot and the
	// admin API for nodes and tokens. Required.
	Server string
	// BundlesServer, HeartbeatServer and CAServer are the admin addresses
	// of the other services; each defaults to Server (berthd dev, berthd
	// serve --role all). Nodes use the endpoints the registration service
	// hands them instead.
	BundlesServer, HeartbeatServer, CAServer string
	// CAFile holds the root certificates (PEM) that verify the servers.
	CAFile string
	// CertFile and KeyFile are the admin certificate (leaf, then
	// intermediate) and its key.
	CertFile, KeyFile string
	// CAHash is what the nodes pin: "sha256:HEX". Default: computed from
	// the root in CAFile.
	CAHash string
}

func (c *Conn) check() error {
	var missing []string
	for _, s := range []struct{ v, name string }{
		{c.Server, "--server or BERTH_SERVER"},
		{c.CAFile, "--ca or BERTH_CA"},
		{c.CertFile, "--cert or BERTH_CERT"},
		{c.KeyFile, "--key or BERTH_KEY"},
	} {
		if s.v == "" {
			missing = append(missing, s.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing connection settings: set %s", strings.Join(missing, ", "))
	}
	for _, a := range []*string{&c.BundlesServer, &c.HeartbeatServer, &c.CAServer} {
		if *a == "" {
			*a = c.Server
		}
	}
	if c.CAHash == "" {
		h, err := caHashOf(c.CAFile)
		if err != nil {
			return err
		}
		c.CAHash = h
	}
	if _, err := mtls.ParseCAHash(c.CAHash); err != nil {
		return fmt.Errorf("--ca-hash: %w", err)
	}
	return nil
}

// caHashOf is the pin of the first self-signed certificate in a PEM file.
func caHashOf(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read CA certificates: %w", err)
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return "", fmt.Errorf("%s holds no self-signed root certificate; set --ca-hash", path)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err == nil && c.CheckSignatureFrom(c) == nil {
			return mtls.CAHash(c), nil
		}
	}
}

// admin holds the admin connections of a run, one per address and
// service, each checking that the server is that service.
type admin struct {
	conn Conn
	tls  *tls.Config
	td   string
	// signer signs the bundles the storm puts: the admin credential.
	signer *bundle.Signer
	mu     sync.Mutex
	conns  map[[2]string]*grpc.ClientConn
}

func newAdmin(c Conn) (*admin, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load admin certificate %s: %w", c.CertFile, err)
	}
	roots, err := mtls.LoadPool(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("load CA certificates %s: %w", c.CAFile, err)
	}
	signer, err := bundleSigner(cert)
	if err != nil {
		return nil, fmt.Errorf("admin certificate %s: %w", c.CertFile, err)
	}
	return &admin{conn: c, tls: mtls.ClientConfig(cert, roots), td: mtls.TrustDomainOf(cert.Leaf), signer: signer,
		conns: map[[2]string]*grpc.ClientConn{}}, nil
}

// bundleSigner is the bundle signer of an admin credential.
func bundleSigner(cert tls.Certificate) (*bundle.Signer, error) {
	var chain []*x509.Certificate
	for _, der := range cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("parse admin certificate: %w", err)
		}
		chain = append(chain, c)
	}
	key, _ := cert.PrivateKey.(crypto.Signer)
	if key == nil || len(chain) == 0 {
		return nil, errors.New("the admin key cannot sign")
	}
	signer, err := bundle.NewAdminSigner(chain, key)
	if err != nil {
		return nil, fmt.Errorf("cannot sign bundles: %w", err)
	}
	return signer, nil
}

func (a *admin) dial(addr, service string) (*grpc.ClientConn, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := [2]string{addr, service}
	if cc := a.conns[key]; cc != nil {
		return cc, nil
	}
	cc, err := rpc.Dial(rpc.ClientConfig{Addr: addr, TLS: mtls.ExpectServer(a.tls.Clone(), a.td, service)})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	a.conns[key] = cc
	return cc, nil
}

func (a *admin) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, cc := range a.conns {
		cc.Close()
	}
}

func (a *admin) nodes() (berthv1.NodeAdminServiceClient, error) {
	cc, err := a.dial(a.conn.Server, mtls.ServiceRegistration)
	return berthv1.NewNodeAdminServiceClient(cc), err
}

func (a *admin) bundles() (berthv1.BundleAdminServiceClient, error) {
	cc, err := a.dial(a.conn.BundlesServer, mtls.ServiceBundles)
	return berthv1.NewBundleAdminServiceClient(cc), err
}

func (a *admin) health() (berthv1.HeartbeatAdminServiceClient, error) {
	cc, err := a.dial(a.conn.HeartbeatServer, mtls.ServiceHeartbeat)
	return berthv1.NewHeartbeatAdminServiceClient(cc), err
}

func (a *admin) ca() (berthv1.CertificateAuthorityServiceClient, error) {
	cc, err := a.dial(a.conn.CAServer, mtls.ServiceCA)
	return berthv1.NewCertificateAuthorityServiceClient(cc), err
}

// adminTimeout bounds one admin call.
const adminTimeout = 30 * time.Second

func call[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	return f(ctx)
}

// listFleet returns the nodes carrying the fleet's label, by key hash.
func (a *admin) listFleet(ctx context.Context, tag string) (map[string]*berthv1.Node, error) {
	c, err := a.nodes()
	if err != nil {
		return nil, err
	}
	out := map[string]*berthv1.Node{}
	req := &berthv1.ListNodesRequest{Labels: map[string]string{labelKey: tag}, PageSize: 1000}
	for {
		resp, err := call(ctx, func(ctx context.Context) (*berthv1.ListNodesResponse, error) { return c.ListNodes(ctx, req) })
		if err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		for _, n := range resp.GetNodes() {
			out[n.GetKeySha256()] = n
		}
		if resp.GetNextPageToken() == "" {
			return out, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// createToken makes an auto-approve bootstrap token for uses nodes that
// labels them as the fleet's.
func (a *admin) createToken(ctx context.Context, tag string, uses int) (id, secret string, err error) {
	c, err := a.nodes()
	if err != nil {
		return "", "", err
	}
	resp, err := call(ctx, func(ctx context.Context) (*berthv1.CreateTokenResponse, error) {
		return c.CreateToken(ctx, &berthv1.CreateTokenRequest{
			TtlSeconds: 6 * 3600, Uses: int32(uses), AutoApprove: true,
			Labels: map[string]string{labelKey: tag}, Description: "berth-loadgen " + tag,
		})
	})
	if err != nil {
		return "", "", fmt.Errorf("create bootstrap token: %w", err)
	}
	return resp.GetToken().GetId(), resp.GetSecretToken(), nil
}

// revokeToken revokes a token the run made, so that none is left usable.
func (a *admin) revokeToken(ctx context.Context, id string) error {
	c, err := a.nodes()
	if err != nil {
		return err
	}
	_, err = call(ctx, func(ctx context.Context) (*berthv1.RevokeTokenResponse, error) {
		return c.RevokeToken(ctx, &berthv1.RevokeTokenRequest{Id: id})
	})
	return err
}

// issuedSince counts the certificates the CA issued at or after t.
func (a *admin) issuedSince(ctx context.Context, t time.Time) (int64, error) {
	c, err := a.ca()
	if err != nil {
		return 0, err
	}
	resp, err := call(ctx, func(ctx context.Context) (*berthv1.ListIssuedResponse, error) {
		return c.ListIssued(ctx, &berthv1.ListIssuedRequest{Since: timestamppb.New(t), CountOnly: true})
	})
	if err != nil {
		return 0, fmt.Errorf("count issued certificates: %w", err)
	}
	return resp.GetCount(), nil
}

// ensureBundle puts the node's small bundle unless it has a current one.
// It reports whether it wrote one.
func (a *admin) ensureBundle(ctx context.Context, n *node) (bool, error) {
	c, err := a.bundles()
	if err != nil {
		return false, err
	}
	h, err := call(ctx, func(ctx context.Context) (*berthv1.ListBundleHistoryResponse, error) {
		return c.ListBundleHistory(ctx, &berthv1.ListBundleHistoryRequest{NodeId: n.id})
	})
	if err != nil {
		return false, fmt.Errorf("bundle history of %s: %w", n.hostname, err)
	}
	for _, v := range h.GetVersions() {
		if v.GetState() == berthv1.BundleState_BUNDLE_STATE_APPROVED {
			return false, nil
		}
	}
	sealed, err := n.sealBundle(h.GetNextVersion(), a.signer)
	if err != nil {
		return false, fmt.Errorf("seal bundle of %s: %w", n.hostname, err)
	}
	_, err = call(ctx, func(ctx context.Context) (*berthv1.BundleAdminServicePutBundleResponse, error) {
		return c.PutBundle(ctx, &berthv1.BundleAdminServicePutBundleRequest{NodeId: n.id, ExpectedVersion: 0, Sealed: sealed})
	})
	if err != nil {
		return false, fmt.Errorf("put bundle of %s: %w", n.hostname, err)
	}
	return true, nil
}

// approve approves a pending node of the fleet.
func (a *admin) approve(ctx context.Context, id string) error {
	c, err := a.nodes()
	if err != nil {
		return err
	}
	_, err = call(ctx, func(ctx context.Context) (*berthv1.ApproveNodeResponse, error) {
		return c.ApproveNode(ctx, &berthv1.ApproveNodeRequest{Id: id})
	})
	return err
}

// deleteNode deletes a node of the fleet (register --reset).
func (a *admin) deleteNode(ctx context.Context, id string) error {
	c, err := a.nodes()
	if err != nil {
		return err
	}
	_, err = call(ctx, func(ctx context.Context) (*berthv1.DeleteNodeResponse, error) {
		return c.DeleteNode(ctx, &berthv1.DeleteNodeRequest{Id: id})
	})
	return err
}

// heartbeatSettings returns the fleet's heartbeat settings.
func (a *admin) heartbeatSettings(ctx context.Context) (*berthv1.HeartbeatSettings, error) {
	c, err := a.health()
	if err != nil {
		return nil, err
	}
	resp, err := call(ctx, func(ctx context.Context) (*berthv1.GetHeartbeatSettingsResponse, error) {
		return c.GetHeartbeatSettings(ctx, &berthv1.GetHeartbeatSettingsRequest{})
	})
	if err != nil {
		return nil, fmt.Errorf("get heartbeat settings: %w", err)
	}
	return resp.GetSettings(), nil
}

// setHeartbeatSettings sets the fleet's interval and grace; zero means the
// service's default.
func (a *admin) setHeartbeatSettings(ctx context.Context, interval, grace time.Duration) (*berthv1.HeartbeatSettings, error) {
	c, err := a.health()
	if err != nil {
		return nil, err
	}
	req := &berthv1.SetHeartbeatSettingsRequest{}
	if interval > 0 {
		req.Interval = durationpb.New(interval)
	}
	if grace > 0 {
		req.Grace = durationpb.New(grace)
	}
	resp, err := call(ctx, func(ctx context.Context) (*berthv1.SetHeartbeatSettingsResponse, error) {
		return c.SetHeartbeatSettings(ctx, req)
	})
	if err != nil {
		return nil, fmt.Errorf("set heartbeat settings: %w", err)
	}
	return resp.GetSettings(), nil
}

// forEach runs f on every node (or other item) with workers goroutines,
// stopping at the first error.
func forEach[T any](ctx context.Context, nodes []T, workers int, f func(context.Context, T) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan T)
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for n := range work {
				if err := f(ctx, n); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for _, n := range nodes {
		select {
		case work <- n:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	return context.Cause(ctx)
}
