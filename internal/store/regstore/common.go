package regstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/eventlog"
)

// Valid reports whether s is one of the four statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusApproved, StatusRejected, StatusRevoked:
		return true
	}
	return false
}

// nodeColumns is the column list every node query selects, in the order the
// scan functions expect.
const nodeColumns = `id, status, key_sha256, hardware_uuid, macs, hostname, serial, labels,
	bundle_kem, bundle_key, csr, token_id, replacement_allowed,
	cert_serial, cert_not_before, cert_not_after, cert_chain,
	certificates_issued, created_at, updated_at, identity_source, ek_hash, ek_certificate`

const intentColumns = `request_id, node_id, key_sha256, prev_serial, hostname, csr, created_at`

// checkIntent and checkCert refuse what the schema would, with a reason.
func checkIntent(in Intent) error {
	switch {
	case in.RequestID == "":
		return errors.New("request ID is empty")
	case in.NodeID == "":
		return errors.New("node ID is empty")
	case len(in.KeySHA256) != sha256.Size:
		return fmt.Errorf("key hash is %d bytes, want %d", len(in.KeySHA256), sha256.Size)
	}
	return nil
}

func checkCert(c Cert) error {
	if c.Serial == "" {
		return errors.New("empty serial")
	}
	return nil
}

// installable says whether an issuance's certificate becomes the node's
// current one: the node is as it was when the intent was opened.
func installable(in Intent, status Status, key []byte, serial string) bool {
	return status == StatusApproved && bytes.Equal(key, in.KeySHA256) && serial == in.PrevSerial
}

const tokenColumns = `id, secret_hash, expires_at, uses_left, auto_approve, labels, description, revoked, created_at,
	min_identity, allow_site_secret`

// checkNode rejects nodes the schema would refuse anyway, with an error that
// says why rather than a constraint name.
func checkNode(n Node) error {
	if n.ID == "" {
		return errors.New("node ID is empty")
	}
	if len(n.KeySHA256) != sha256.Size {
		return fmt.Errorf("key hash is %d bytes, want %d", len(n.KeySHA256), sha256.Size)
	}
	if !n.Status.Valid() {
		return fmt.Errorf("unknown status %q", n.Status)
	}
	return nil
}

// tokenError explains why token t (found reports whether it exists) could not
// be used at now.
func tokenError(t Token, found bool, now time.Time) error {
	switch {
	case !found || t.Revoked:
		return ErrTokenInvalid
	case !now.Before(t.ExpiresAt):
		return ErrTokenExpired
	case t.UsesLeft <= 0:
		return ErrTokenExhausted
	}
	// Active now, yet the conditional update missed it: a concurrent writer
	// changed it in between. Report it as used up, which is what such a
	// writer does.
	return ErrTokenExhausted
}

// utc normalises a time for storage: UTC, microsecond precision, which both
// backends can hold exactly.
func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// Empty collections come back as nil so both backends return identical
// values.

func nilIfEmptyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// nonEmpty drops empty strings, which stand for "unknown" and match
// nothing.
func nonEmpty(vs []string) []string {
	var out []string
	for _, v := range vs {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// events names the node lifecycle log's tables.
var events = eventlog.NewTable("reg")

// details builds event details from key/value pairs, leaving out empty
// values; nil when nothing is left.
func details(kv ...string) map[string]string {
	var d map[string]string
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		if d == nil {
			d = make(map[string]string, len(kv)/2)
		}
		d[kv[i]] = kv[i+1]
	}
	return d
}

// registeredEvent records a registration (or a replacement of replaceID).
func registeredEvent(n Node, tokenID, replaceID string, now time.Time) eventlog.Event {
	typ := EventRegistered
	if replaceID != "" {
		typ = EventReplaced
	}
	return eventlog.Event{Type: typ, NodeID: n.ID, Time: now,
		Details: details(DetailStatus, string(n.Status), DetailToken, tokenID, DetailHostname, n.Hostname,
			DetailIdentitySource, n.IdentitySource)}
}

// duplicateEvent records that n shares hardware with others (their rows),
// or nothing when it shares none.
func duplicateEvent(n Node, others []Node, now time.Time) []eventlog.Event {
	var ids, macs []string
	uuid := ""
	for _, o := range others {
		if o.ID == n.ID {
			continue
		}
		ids = append(ids, o.ID)
		if n.HardwareUUID != "" && o.HardwareUUID == n.HardwareUUID {
			uuid = n.HardwareUUID
		}
		for _, m := range o.MACs {
			if slices.Contains(n.MACs, m) && !slices.Contains(macs, m) {
				macs = append(macs, m)
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(macs)
	return []eventlog.Event{{Type: EventDuplicateHardware, NodeID: n.ID, Time: now,
		Details: details(DetailDuplicateOf, strings.Join(ids, ","), DetailHardwareUUID, uuid, DetailMACs, strings.Join(macs, ","))}}
}

// claimEvent records a refused claim on node id's hardware.
func claimEvent(id string, c Claim, now time.Time) eventlog.Event {
	return eventlog.Event{Type: EventDuplicateHardware, NodeID: id, Time: now,
		Details: details(DetailHardwareUUID, c.HardwareUUID, DetailClaimantKey, hex.EncodeToString(c.KeySHA256),
			DetailIdentitySource, c.IdentitySource)}
}

// statusEvent records a status change; its type is the new status.
func statusEvent(id string, from, to Status, now time.Time, actor string) eventlog.Event {
	return eventlog.Event{Type: string(to), NodeID: id, Time: now,
		Details: details(DetailStatus, string(to), DetailPreviousStatus, string(from), DetailActor, actor)}
}

// certificateEvent records a new current certificate.
func certificateEvent(id, prevSerial string, c Cert, now time.Time) eventlog.Event {
	typ := EventCertificateRenewed
	if prevSerial == "" {
		typ = EventCertificateIssued
	}
	return eventlog.Event{Type: typ, NodeID: id, Time: now,
		Details: details(DetailSerial, c.Serial, DetailNotAfter, c.NotAfter.UTC().Format(time.RFC3339), DetailPreviousSerial, prevSerial)}
}

// deletedEvent records a deletion.
func deletedEvent(id string, now time.Time, actor string) eventlog.Event {
	return eventlog.Event{Type: EventDeleted, NodeID: id, Time: now, Details: details(DetailActor, actor)}
}
