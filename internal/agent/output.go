package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Actions of a boot.
const (
	ActionRegistered = "registered" // this boot enrolled the node
	ActionResumed    = "resumed"    // the node was known already
	// ActionRefused is a boot the server refused with an answer that
	// waiting cannot change; Result.Reason says why.
	ActionRefused = "refused"
	// ActionOffline is a --once --offline continue boot that went on
	// without reaching the registration server; Result.Reason says why.
	ActionOffline = "offline"
)

// Result is what a boot printed: with --output json, one object with
// these field names, which are a contract.
type Result struct {
	NodeID string `json:"node_id"`
	// Status is pending, approved, rejected or revoked.
	Status string `json:"status"`
	// Action is registered, resumed, or refused (with Reason).
	Action string `json:"action"`
	// Reason is why a refused boot was refused, one line.
	Reason string `json:"reason,omitempty"`
	// CertSerial is the lower-case hex serial of the node certificate.
	CertSerial string `json:"cert_serial"`
	// CertNotAfter is when the certificate expires, RFC 3339.
	CertNotAfter string `json:"cert_not_after"`
	// BundleVersion is the applied bundle's version, 0 if none.
	BundleVersion uint64 `json:"bundle_version"`
	// FilesApplied counts files written from the bundle.
	FilesApplied int `json:"files_applied"`
	// Bundle is what the boot did about the bundle: BundleApplied,
	// BundleNone or BundleUnchecked. Empty when the boot did not get
	// that far (a pending or denied node).
	Bundle string `json:"bundle,omitempty"`
	// BundleSource is where an applied bundle came from: inline, fetched
	// or configured.
	BundleSource string `json:"bundle_source,omitempty"`
	// BundleState is the applied bundle's state in the bundle store:
	// approved, or pending when this boot's upload waits for approval.
	BundleState string `json:"bundle_state,omitempty"`
	// Root is where the bundle's files were applied.
	Root string `json:"root,omitempty"`
	// Renewed is true when this boot made the CA issue a new certificate.
	Renewed bool `json:"renewed"`
	// CertDir is where the credentials were written.
	CertDir string `json:"cert_dir,omitempty"`
	// ClockOffsetSeconds is how far the registration server's clock is
	// ahead of this node's (negative: behind), corrected by half the round
	// trip; absent when the server did not say its time.
	ClockOffsetSeconds *float64 `json:"clock_offset_seconds,omitempty"`
	// Message is the server's reason for a rejected or revoked node.
	Message string `json:"message,omitempty"`
	// Heartbeat is what the boot did about heartbeats: HeartbeatAcked
	// (--once: a beat was acknowledged), HeartbeatNone (no heartbeat
	// endpoint known) or HeartbeatDisabled (--no-heartbeat). Empty for a
	// long-running agent, which goes on to send them, and for a boot that
	// did not get that far.
	Heartbeat string `json:"heartbeat,omitempty"`
	// HeartbeatInterval is the interval the heartbeat service set, in
	// seconds, when Heartbeat is HeartbeatAcked.
	HeartbeatInterval float64 `json:"heartbeat_interval,omitempty"`
}

// StatusName maps a node status to its name in output.
func StatusName(s berthv1.NodeStatus) string {
	switch s {
	case berthv1.NodeStatus_NODE_STATUS_PENDING:
		return "pending"
	case berthv1.NodeStatus_NODE_STATUS_APPROVED:
		return "approved"
	case berthv1.NodeStatus_NODE_STATUS_REJECTED:
		return "rejected"
	case berthv1.NodeStatus_NODE_STATUS_REVOKED:
		return "revoked"
	}
	return "unknown"
}

// newResult describes credentials.
func newResult(c *Credentials, action string) *Result {
	r := &Result{NodeID: c.NodeID, Status: StatusName(c.Status), Action: action, Renewed: c.Renewed}
	if leaf := c.Leaf(); leaf != nil {
		r.CertSerial = leaf.SerialNumber.Text(16)
		r.CertNotAfter = leaf.NotAfter.UTC().Format(time.RFC3339)
	}
	return r
}

// Write prints r in format o.
func (r *Result) Write(w io.Writer, o Output) error {
	if o == OutputJSON {
		return json.NewEncoder(w).Encode(r)
	}
	var err error
	switch r.Status {
	case "approved":
		_, err = fmt.Fprintf(w, "node %s approved (%s): certificate %s valid until %s, credentials in %s\n",
			r.NodeID, r.Action, r.CertSerial, r.CertNotAfter, r.CertDir)
	case "pending":
		_, err = fmt.Fprintf(w, "node %s is pending approval (%s)\n", r.NodeID, r.Action)
	default:
		_, err = fmt.Fprintf(w, "node %s is %s\n", r.NodeID, r.Status)
	}
	if err != nil {
		return err
	}
	switch r.Bundle {
	case BundleNone:
		_, err = fmt.Fprintln(w, "no bundle")
	case BundleUnchecked:
		_, err = fmt.Fprintln(w, "no bundle store known; bundle not checked")
	case BundleApplied:
		how := r.BundleSource
		if r.BundleState == BundleStatePending {
			how += ", upload pending approval"
		}
		version := "bundle"
		if r.BundleVersion > 0 {
			version = fmt.Sprintf("bundle version %d", r.BundleVersion)
		}
		_, err = fmt.Fprintf(w, "%s applied (%s): %d files under %s\n", version, how, r.FilesApplied, r.Root)
	}
	if err == nil && r.Heartbeat == HeartbeatAcked {
		iv := time.Duration(r.HeartbeatInterval * float64(time.Second))
		_, err = fmt.Fprintf(w, "heartbeat acknowledged, interval %s\n", iv)
	}
	return err
}
