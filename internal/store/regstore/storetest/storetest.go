// Package storetest is the conformance suite every regstore.Store
// implementation must pass. Run it from each backend's tests:
//
//	storetest.Run(t, func(t *testing.T) regstore.Store { ... })
package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/berth-dev/berth/internal/store/regstore"
)

// Run runs every test against stores made by newStore. Each call to newStore
// must return a store on a fresh, empty database, closed when t ends.
func Run(t *testing.T, newStore func(t *testing.T) regstore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s regstore.Store)
	}{
		{"TokenRoundTrip", testTokenRoundTrip},
		{"CreateTokenConflict", testCreateTokenConflict},
		{"ListTokens", testListTokens},
		{"RevokeToken", testRevokeToken},
		{"RegisterNode", testRegisterNode},
		{"RegisterNodeTokenErrors", testRegisterNodeTokenErrors},
		{"RegisterNodeConflict", testRegisterNodeConflict},
		{"RegisterNodeInvalid", testRegisterNodeInvalid},
		{"RegisterNodeConcurrentLastUse", testRegisterNodeConcurrentLastUse},
		{"RegisterNodeConcurrentUses", testRegisterNodeConcurrentUses},
		{"NodeRoundTrip", testNodeRoundTrip},
		{"Replace", testReplace},
		{"ReplaceErrors", testReplaceErrors},
		{"GetNodeNotFound", testGetNodeNotFound},
		{"NodesByHardwareUUID", testNodesByHardwareUUID},
		{"ListNodes", testListNodes},
		{"ListNodesPaging", testListNodesPaging},
		{"CountNodes", testCountNodes},
		{"SetLabels", testSetLabels},
		{"SetStatus", testSetStatus},
		{"SetCertificate", testSetCertificate},
		{"SetCertificateConcurrent", testSetCertificateConcurrent},
		{"AllowReplacement", testAllowReplacement},
		{"ClaimAndComplete", testClaimAndComplete},
		{"ClaimErrors", testClaimErrors},
		{"CompleteMovedOn", testCompleteMovedOn},
		{"IssuanceRace", testIssuanceRace},
		{"RegisterIssuing", testRegisterIssuing},
		{"InstallIssuance", testInstallIssuance},
		{"ListUncertified", testListUncertified},
		{"DeleteNode", testDeleteNode},
		{"EventsWithChanges", testEventsWithChanges},
		{"EventsReplace", testEventsReplace},
		{"EventsNotOnErrors", testEventsNotOnErrors},
		{"EventsRetention", testEventsRetention},
		{"EventsWatch", testEventsWatch},
		{"TokenIdentityPolicy", testTokenIdentityPolicy},
		{"NodesByHardware", testNodesByHardware},
		{"DuplicateHardwareEvents", testDuplicateHardwareEvents},
		{"RegisterClaims", testRegisterClaims},
		{"NoteDuplicate", testNoteDuplicate},
		{"RegisterWithoutToken", testRegisterWithoutToken},
		{"EnrolledEKs", testEnrolledEKs},
		{"APITokenRoundTrip", testAPITokenRoundTrip},
		{"APITokenInvalid", testAPITokenInvalid},
		{"ListAPITokens", testListAPITokens},
		{"RevokeAPIToken", testRevokeAPIToken},
		{"TouchAPITokens", testTouchAPITokens},
		{"APITokenEvents", testAPITokenEvents},
		{"EKLabels", testEKLabels},
		{"RecordBoot", testRecordBoot},
		{"RecordBootErrors", testRecordBootErrors},
		{"RecordBootConcurrent", testRecordBootConcurrent},
		{"BootPolicyViolation", testBootPolicyViolation},
		{"ReplaceClearsBoot", testReplaceClearsBoot},
		{"PCRPolicies", testPCRPolicies},
		{"Secret", testSecret},
		{"ConsoleSessions", testConsoleSessions},
		{"ConsoleLinkRace", testConsoleLinkRace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

// t0 has nanoseconds and a non-UTC zone on purpose: stores must return the
// same instant in UTC, truncated to microseconds.
// admin is the actor of administrators' changes in these tests.
const admin = "admin:ops"

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))

// at returns t0 plus d, as a store would return it.
func at(d time.Duration) time.Time { return t0.Add(d) }

func stored(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// cmpOpts compares times by instant and ignores nil-versus-empty.
var cmpOpts = []cmp.Option{cmpopts.EquateEmpty()}

// key returns the identity key hash of test node i.
func key(i int) []byte {
	h := sha256.Sum256(fmt.Appendf(nil, "identity key %d", i))
	return h[:]
}

func token(id string, uses int) regstore.Token {
	return regstore.Token{
		ID:          id,
		SecretHash:  key(-1),
		ExpiresAt:   at(time.Hour),
		UsesLeft:    uses,
		Labels:      map[string]string{"rack": "r1"},
		Description: "test token " + id,
		CreatedAt:   t0,
	}
}

func node(id string, i int) regstore.Node {
	n := regstore.Node{
		ID:           id,
		Status:       regstore.StatusPending,
		KeySHA256:    key(i),
		HardwareUUID: fmt.Sprintf("uuid-%d", i),
		MACs:         []string{fmt.Sprintf("02:00:00:00:00:%02x", i%256)},
		Hostname:     fmt.Sprintf("host-%d", i),
		Serial:       fmt.Sprintf("SN%d", i),
		Labels:       map[string]string{"rack": "r1"},
		BundleKEM:    0x0020,
		BundleKey:    key(i + 1_000_000),
		CSR:          fmt.Appendf(nil, "CSR of node %d", i),
		// Each test node says how it holds its key, so that every round
		// trip covers the column.
		IdentitySource: []string{"seed-file", "tpm", "file", "site-secret"}[i%4],
	}
	if n.IdentitySource == "tpm" {
		n.EKHash, n.EKCertificate = fmt.Sprintf("sha256:%x", key(i+2_000_000)), "trusted"
		n.AKPublic = fmt.Appendf(nil, "AK public area of node %d", i)
	}
	return n
}

// expected is what a store returns after RegisterNode(tokenID, now, n, "").
func expected(n regstore.Node, tokenID string, now time.Time) regstore.Node {
	n.TokenID = tokenID
	n.CreatedAt, n.UpdatedAt = stored(now), stored(now)
	return n
}

func cert(serial string) regstore.Cert {
	return regstore.Cert{
		Serial:    serial,
		NotBefore: at(-time.Minute),
		NotAfter:  at(24 * time.Hour),
		Chain:     [][]byte{[]byte("leaf " + serial), []byte("intermediate")},
	}
}

func storedCert(c regstore.Cert) *regstore.Cert {
	c.NotBefore, c.NotAfter = stored(c.NotBefore), stored(c.NotAfter)
	return &c
}

func ctx(t *testing.T) context.Context { return t.Context() }

func mustCreateToken(t *testing.T, s regstore.Store, tok regstore.Token) {
	t.Helper()
	if err := s.CreateToken(ctx(t), tok); err != nil {
		t.Fatalf("CreateToken(%s): %v", tok.ID, err)
	}
}

func mustRegister(t *testing.T, s regstore.Store, tokenID string, now time.Time, n regstore.Node) regstore.Node {
	t.Helper()
	got, err := s.RegisterNode(ctx(t), tokenID, now, n, "")
	if err != nil {
		t.Fatalf("RegisterNode(%s): %v", n.ID, err)
	}
	return got
}

func mustGetToken(t *testing.T, s regstore.Store, id string) regstore.Token {
	t.Helper()
	tok, err := s.GetToken(ctx(t), id)
	if err != nil {
		t.Fatalf("GetToken(%s): %v", id, err)
	}
	return tok
}

func mustGetNode(t *testing.T, s regstore.Store, id string) regstore.Node {
	t.Helper()
	n, err := s.GetNode(ctx(t), id)
	if err != nil {
		t.Fatalf("GetNode(%s): %v", id, err)
	}
	return n
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

func diff(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpOpts...); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", what, d)
	}
}

// checkUTC fails unless every time the store returned is in UTC, so callers
// can format them without surprises.
func checkUTC(t *testing.T, times ...time.Time) {
	t.Helper()
	for _, tm := range times {
		if tm.Location() != time.UTC {
			t.Errorf("time %v is in %v, want UTC", tm, tm.Location())
		}
	}
}

// nodeIDs lists the IDs of ns, for compact comparisons.
func nodeIDs(ns []regstore.Node) []string {
	var ids []string
	for _, n := range ns {
		ids = append(ids, n.ID)
	}
	return ids
}

// checkNoNodes fails if the store holds any node.
func checkNoNodes(t *testing.T, s regstore.Store) {
	t.Helper()
	ns, err := s.ListNodes(ctx(t), regstore.NodeFilter{})
	if err != nil {
		t.Fatalf("ListNodes: %v", err)
	}
	if len(ns) != 0 {
		t.Errorf("store holds nodes %v, want none", nodeIDs(ns))
	}
}
