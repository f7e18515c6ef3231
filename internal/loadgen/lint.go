package loadgen

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/berth-dev/berth/internal/agent"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// maxLintSamples caps the failing lint names a result lists.
const maxLintSamples = 3

// lintStats is what linting the node certificates found.
type lintStats struct {
	linted, failed int      // certificates
	samples        []string // failing lint names, up to maxLintSamples
	// unread counts nodes whose certificate could not be read or parsed;
	// they count as failed too.
	unread int
}

// lintCerts runs zlint's RFC 5280 lints over the node certificate (the
// leaf of node.crt in its cert dir) of every node: untimed, after the
// boots. The CA/Browser Forum lints are left out, as in internal/pki's
// test: they are meant for the Web PKI, and berth's is private.
func lintCerts(ctx context.Context, nodes []*node) (*lintStats, error) {
	registry, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: lint.SourceList{lint.RFC5280}})
	if err != nil {
		return nil, fmt.Errorf("zlint registry: %w", err)
	}
	var (
		mu sync.Mutex
		st lintStats
	)
	err = forEach(ctx, nodes, runtime.NumCPU(), func(_ context.Context, n *node) error {
		failed, err := lintNode(registry, n)
		mu.Lock()
		defer mu.Unlock()
		st.linted++
		if err != nil {
			st.unread++
			st.failed++
			if len(st.samples) < maxLintSamples {
				st.samples = append(st.samples, fmt.Sprintf("%s: %v", n.hostname, err))
			}
			return nil
		}
		if len(failed) > 0 {
			st.failed++
			for _, f := range failed {
				if len(st.samples) < maxLintSamples && !slices.Contains(st.samples, f) {
					st.samples = append(st.samples, f)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(st.samples)
	return &st, nil
}

// lintNode lints the leaf of the node's node.crt and returns the names of
// the lints that fail (error or fatal).
func lintNode(registry lint.Registry, n *node) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(n.certDir(), agent.CertFile))
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("node.crt holds no certificate")
	}
	c, err := zx509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("zcrypto cannot parse node.crt: %w", err)
	}
	var failed []string
	for name, r := range zlint.LintCertificateEx(c, registry).Results {
		if r.Status == lint.Error || r.Status == lint.Fatal {
			failed = append(failed, name)
		}
	}
	slices.Sort(failed)
	return failed, nil
}

// checkRegistered lints every certificate the register scenario's nodes
// received and checks that no node was registered twice: every booted
// node has its own node ID, and the registry holds exactly one node per
// key of the fleet, N in all.
func (r *runner) checkRegistered(ctx context.Context, boots []*boot) {
	res := r.res
	var booted []*node
	ids := map[string]int{}
	for _, b := range boots {
		var out agent.Result
		if json.Unmarshal(b.out.Bytes(), &out) != nil || out.NodeID == "" {
			continue
		}
		booted = append(booted, b.n)
		ids[out.NodeID]++
	}
	st, err := lintCerts(ctx, booted)
	if err != nil {
		res.Notes = append(res.Notes, "certificates not linted: "+err.Error())
	} else {
		res.CertsLinted, res.LintFailures, res.LintFailureSamples = &st.linted, &st.failed, st.samples
		note := fmt.Sprintf("zlint RFC 5280 (v3.6.1) over every node certificate received (untimed): %d linted, %d failing", st.linted, st.failed)
		if len(st.samples) > 0 {
			note += fmt.Sprintf(" (e.g. %v)", st.samples)
		}
		if st.unread > 0 {
			note += fmt.Sprintf("; %d could not be read or parsed", st.unread)
		}
		res.Notes = append(res.Notes, note)
	}

	dup := 0
	for _, c := range ids {
		dup += c - 1
	}
	entries, keys, err := r.adm.countFleet(ctx, r.fleet.tag)
	if err != nil {
		res.Notes = append(res.Notes, "duplicate nodes not checked against the registry: "+err.Error())
	} else {
		// Two nodes for one key, or more nodes than the fleet has.
		dup += entries - keys
		dup += max(keys-len(r.nodes), 0)
		res.FleetNodes = &entries
	}
	res.DuplicateNodes = &dup
	note := fmt.Sprintf("duplicate nodes: %d (%d distinct node IDs among %d boots that reported one", dup, len(ids), len(booted))
	if err == nil {
		note += fmt.Sprintf("; the registry lists %d nodes of the fleet for %d keys, %d expected", entries, keys, len(r.nodes))
	}
	res.Notes = append(res.Notes, note+")")
}

// countFleet counts the registry's nodes carrying the fleet's label, and
// their distinct keys.
func (a *admin) countFleet(ctx context.Context, tag string) (entries, keys int, err error) {
	c, err := a.nodes()
	if err != nil {
		return 0, 0, err
	}
	seen := map[string]bool{}
	req := &berthv1.ListNodesRequest{Labels: map[string]string{labelKey: tag}, PageSize: 1000}
	for {
		resp, err := call(ctx, func(ctx context.Context) (*berthv1.ListNodesResponse, error) { return c.ListNodes(ctx, req) })
		if err != nil {
			return 0, 0, fmt.Errorf("list nodes: %w", err)
		}
		for _, n := range resp.GetNodes() {
			entries++
			seen[n.GetKeySha256()] = true
		}
		if resp.GetNextPageToken() == "" {
			return entries, len(seen), nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}
