package daemon

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/cli"
	"github.com/berth-dev/berth/internal/pki"
)

// berthctl runs berthctl in this process against addr with the admin
// certificate, and returns its exit code and output.
func berthctl(t *testing.T, l *pki.Layout, addr string, args ...string) (int, string, string) {
	t.Helper()
	env := map[string]string{"BERTH_SERVER": addr, "BERTH_CA": l.AdminCAPath(), "BERTH_CERT": l.AdminCertPath(), "BERTH_KEY": l.AdminKeyPath()}
	var out, errOut bytes.Buffer
	code := cli.Config{Getenv: func(k string) string { return env[k] }, Stdout: &out, Stderr: &errOut, Now: time.Now}.Run(t.Context(), args)
	return code, out.String(), errOut.String()
}

func mustBerthctl(t *testing.T, l *pki.Layout, addr string, out any, args ...string) {
	t.Helper()
	code, stdout, stderr := berthctl(t, l, addr, append(args, "-o", "json")...)
	if code != 0 {
		t.Fatalf("berthctl %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), out); err != nil {
		t.Fatalf("berthctl %s: %v: %q", strings.Join(args, " "), err, stdout)
	}
}

// TestBerthctlAPITokensAndSettings runs berthctl api-tokens and settings
// against berthd dev: what they print, that a token it creates works at
// the front door, that settings are stored and read back, and the
// refusals of bad input.
func TestBerthctlAPITokensAndSettings(t *testing.T) {
	l := newPKI(t, "")
	addr := serve(t, Config{Role: RoleAll, PKIDir: l.Dir})

	var created struct {
		Token, ID, Name, Role, State string
		ExpiresAt                    string `json:"expires_at"`
	}
	mustBerthctl(t, l, addr, &created, "api-tokens", "create", "--role", "viewer", "--name", "grafana", "--ttl", "720h")
	if !strings.HasPrefix(created.Token, "berth_"+created.ID+"_") || created.Role != "viewer" || created.Name != "grafana" ||
		created.State != "active" || created.ExpiresAt == "" {
		t.Fatalf("api-tokens create = %+v", created)
	}
	code, body, _ := bearer{restClient: newRESTClient(t, l, addr, tlsNone()), token: "Bearer " + created.Token}.do(t, "GET", "/v1/settings/bundles", "")
	if code != http.StatusOK {
		t.Fatalf("the created viewer token reading settings: %d %v", code, body)
	}
	var list []struct {
		ID, State  string
		LastUsedAt string `json:"last_used_at"`
	}
	mustBerthctl(t, l, addr, &list, "api-tokens", "list")
	if len(list) != 1 || list[0].ID != created.ID || list[0].LastUsedAt == "" {
		t.Errorf("api-tokens list = %+v, want the token with its last use", list)
	}
	if code, out, errOut := berthctl(t, l, addr, "api-tokens", "list"); code != 0 || !strings.Contains(out, "grafana") || !strings.Contains(out, "viewer") {
		t.Errorf("api-tokens list table: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := berthctl(t, l, addr, "api-tokens", "revoke", created.ID); code != 0 {
		t.Fatalf("api-tokens revoke: %d %s", code, errOut)
	}
	mustBerthctl(t, l, addr, &list, "api-tokens", "list")
	if len(list) != 0 {
		t.Errorf("api-tokens list after revoke = %+v, want none", list)
	}
	mustBerthctl(t, l, addr, &list, "api-tokens", "list", "--all")
	if len(list) != 1 || list[0].State != "revoked" {
		t.Errorf("api-tokens list --all = %+v, want the revoked token", list)
	}

	// Bad input: a readable message and a non-zero exit, nothing created.
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"api-tokens", "create"}, "--role must be viewer, operator or admin"},
		{[]string{"api-tokens", "create", "--role", "root"}, "--role must be viewer, operator or admin"},
		{[]string{"api-tokens", "create", "--role", "viewer", "--name", "has space"}, "name must be at most 64 letters"},
		{[]string{"api-tokens", "create", "--role", "viewer", "--ttl", "soon"}, "Go duration"},
		{[]string{"api-tokens", "revoke", "nope"}, "id must be an API token ID"},
		{[]string{"api-tokens", "revoke", "0123456789abcdef"}, "API token not found"},
		{[]string{"settings", "set", "heartbeat-interval", "soon"}, `invalid heartbeat-interval "soon"`},
		{[]string{"settings", "set", "heartbeat-interval", "0s"}, `invalid heartbeat-interval "0s"`},
		{[]string{"settings", "set", "heartbeat-interval", "-5s"}, "unknown flag"},
		{[]string{"settings", "set", "heartbeat-interval", "500ms"}, "interval"},
		{[]string{"settings", "set", "heartbeat-grace", "1s"}, "grace"},
		{[]string{"settings", "set", "bundle-approval", "maybe"}, `invalid bundle-approval "maybe"`},
		{[]string{"settings", "set", "colour", "blue"}, `unknown setting "colour"`},
		{[]string{"settings", "set", "bundle-approval"}, "missing value"},
	} {
		code, _, errOut := berthctl(t, l, addr, tt.args...)
		if code == 0 || !strings.Contains(errOut, tt.msg) {
			t.Errorf("berthctl %s: exit %d, %q; want a failure saying %q", strings.Join(tt.args, " "), code, errOut, tt.msg)
		}
	}
	mustBerthctl(t, l, addr, &list, "api-tokens", "list", "--all")
	if len(list) != 1 {
		t.Errorf("refused creations left tokens: %+v", list)
	}

	type settings struct {
		HeartbeatInterval          string `json:"heartbeat_interval"`
		HeartbeatGrace             string `json:"heartbeat_grace"`
		HeartbeatDefaultInterval   string `json:"heartbeat_default_interval"`
		HeartbeatEffectiveInterval string `json:"heartbeat_effective_interval"`
		BundleApproval             string `json:"bundle_approval"`
		BundleDefaultApproval      string `json:"bundle_default_approval"`
		BundleApprovalUpdatedBy    string `json:"bundle_approval_updated_by"`
		BundleApprovalSet          bool   `json:"bundle_approval_set"`
	}
	var s settings
	mustBerthctl(t, l, addr, &s, "settings", "get")
	if s.HeartbeatInterval != "10s" || s.HeartbeatDefaultInterval != "10s" || s.HeartbeatGrace != "40s" ||
		s.BundleApproval != "auto" || s.BundleApprovalSet {
		t.Fatalf("settings get on a new deployment = %+v, want the defaults", s)
	}
	mustBerthctl(t, l, addr, &s, "settings", "set", "heartbeat-interval", "15s")
	if s.HeartbeatInterval != "15s" || s.HeartbeatEffectiveInterval != "15s" || s.HeartbeatGrace != "1m" {
		t.Errorf("after heartbeat-interval 15s: %+v, want 15s and the grace scaled to 1m", s)
	}
	mustBerthctl(t, l, addr, &s, "settings", "set", "heartbeat-grace", "2m")
	if s.HeartbeatInterval != "15s" || s.HeartbeatGrace != "2m" {
		t.Errorf("after heartbeat-grace 2m: %+v, want the interval kept", s)
	}
	mustBerthctl(t, l, addr, &s, "settings", "set", "heartbeat-interval", "20s")
	if s.HeartbeatInterval != "20s" || s.HeartbeatGrace != "2m" {
		t.Errorf("after heartbeat-interval 20s: %+v, want the grace set before kept", s)
	}
	mustBerthctl(t, l, addr, &s, "settings", "set", "bundle-approval", "required")
	if s.BundleApproval != "required" || !s.BundleApprovalSet || s.BundleApprovalUpdatedBy != "admin:admin" || s.BundleDefaultApproval != "auto" {
		t.Errorf("after bundle-approval required: %+v", s)
	}
	// Stored: a read through REST sees the same.
	code, body = newRESTClient(t, l, addr, mustAdmin(t, l)).do(t, "GET", "/v1/settings/bundles", "")
	if st, _ := body["settings"].(map[string]any); code != http.StatusOK || st["approval"] != "required" {
		t.Errorf("GET /v1/settings/bundles: %d %v", code, body)
	}
	mustBerthctl(t, l, addr, &s, "settings", "set", "heartbeat-interval", "default")
	mustBerthctl(t, l, addr, &s, "settings", "set", "bundle-approval", "default")
	if s.HeartbeatInterval != "10s" || s.BundleApproval != "auto" || s.BundleApprovalSet {
		t.Errorf("after going back to the defaults: %+v", s)
	}
	if code, out, _ := berthctl(t, l, addr, "settings", "get"); code != 0 || !strings.Contains(out, "heartbeat-interval") || !strings.Contains(out, "bundle-approval") {
		t.Errorf("settings get table: %d %q", code, out)
	}
}

func tlsNone() tls.Certificate { return tls.Certificate{} }

func mustAdmin(t *testing.T, l *pki.Layout) tls.Certificate {
	t.Helper()
	c, err := l.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return c
}
