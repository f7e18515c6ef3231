package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/berth-dev/berth/internal/apitoken"
	"github.com/berth-dev/berth/internal/cli"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// bearer is a REST client presenting an API token and no certificate.
type bearer struct {
	*restClient
	token string
}

func (c bearer) do(t *testing.T, method, path, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: %d, body not JSON: %v", method, path, resp.StatusCode, err)
	}
	return resp.StatusCode, out, resp.Header
}

// createAPIToken creates a token over REST with the admin certificate
// and returns its ID and the whole token.
func createAPIToken(t *testing.T, admin *restClient, body string) (id, token string) {
	t.Helper()
	code, resp := admin.do(t, "POST", "/v1/api-tokens", body)
	tok, _ := resp["token"].(map[string]any)
	if code != http.StatusOK || tok == nil {
		t.Fatalf("POST /v1/api-tokens %s: %d %v", body, code, resp)
	}
	return tok["id"].(string), resp["secret_token"].(string)
}

// dialNoCert connects over TLS without a client certificate, as an
// engine with an API token does.
func dialNoCert(t *testing.T, l *pki.Layout, addr string) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{RootCAs: l.RootPool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
	conn, err := rpc.Dial(rpc.ClientConfig{Addr: addr, TLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func withBearer(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

// TestAPITokensAtTheFrontDoor drives the admin API with API tokens of each
// role and no client certificate, over REST and gRPC, at the front door
// of berthd dev (SQLite) and of a split deployment (berthd serve --role
// api before the services on PostgreSQL): what each role may do, who the
// event log says acted, and every refused credential.
func TestAPITokensAtTheFrontDoor(t *testing.T) {
	t.Run("all in one process", func(t *testing.T) {
		l := newPKI(t, "")
		testAPITokens(t, l, serve(t, Config{Role: RoleAll, PKIDir: l.Dir}), "")
	})
	t.Run("split on postgres", func(t *testing.T) {
		cluster := pgtest.NewCluster(t)
		l := newPKI(t, "")
		d := startSplit(t, l, cluster.DSN())
		testAPITokens(t, l, d.front, d.addrs[RoleRegistration])
	})
}

// testAPITokens runs against the front door at addr; reg, when set, is
// the registration service's own address (a split deployment), where
// tokens are refused.
func testAPITokens(t *testing.T, l *pki.Layout, addr, reg string) {
	adminCert, err := l.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	admin := newRESTClient(t, l, addr, adminCert)
	anon := newRESTClient(t, l, addr, tls.Certificate{})
	viewerID, viewer := createAPIToken(t, admin, `{"role": "viewer", "name": "dashboard"}`)
	operatorID, operator := createAPIToken(t, admin, `{"role": "operator", "name": "ci-operator", "ttl_seconds": 3600}`)
	adminTokID, adminTok := createAPIToken(t, admin, `{"role": "admin", "name": "root-engine"}`)
	as := func(tok string) bearer { return bearer{restClient: anon, token: "Bearer " + tok} }

	// Nodes to act on: the admin registers them as usual.
	regAddr := addr
	if reg != "" {
		regAddr = reg
	}
	first := registerPending(t, l, regAddr, admin)

	// A viewer reads, and may do nothing else: 403.
	code, body, _ := as(viewer).do(t, "GET", "/v1/nodes?status=pending", "")
	if code != http.StatusOK || strings.Join(nodeIDs(body), ",") != first {
		t.Fatalf("viewer GET /v1/nodes: %d %v, want node %s", code, body, first)
	}
	for _, call := range []struct{ method, path, body string }{
		{"POST", "/v1/nodes/" + first + ":approve", ""},
		{"POST", "/v1/nodes/" + first + ":revoke", `{"reason": "x"}`},
		{"POST", "/v1/tokens", `{}`},
		{"POST", "/v1/api-tokens", `{"role": "admin"}`},
		{"GET", "/v1/api-tokens", ""},
		{"PUT", "/v1/settings/heartbeat", `{"interval": "5s"}`},
		{"PUT", "/v1/settings/bundles", `{"approval": "required"}`},
	} {
		code, body, _ := as(viewer).do(t, call.method, call.path, call.body)
		wantStatus(t, "viewer "+call.method+" "+call.path, code, body, http.StatusForbidden, 7, "caller is not permitted to call this method")
	}
	// An operator approves; the event log names the token.
	code, body, _ = as(operator).do(t, "POST", "/v1/nodes/"+first+":approve", "")
	if node, _ := body["node"].(map[string]any); code != http.StatusOK || node["status"] != "NODE_STATUS_APPROVED" {
		t.Fatalf("operator approve: %d %v", code, body)
	}
	for _, call := range []struct{ method, path, body string }{
		{"POST", "/v1/tokens", `{}`},
		{"POST", "/v1/api-tokens", `{"role": "viewer"}`},
		{"PUT", "/v1/settings/bundles", `{"approval": "required"}`},
		{"PUT", "/v1/settings/heartbeat", `{"interval": "5s"}`},
	} {
		code, body, _ := as(operator).do(t, call.method, call.path, call.body)
		wantStatus(t, "operator "+call.method+" "+call.path, code, body, http.StatusForbidden, 7, "caller is not permitted")
	}
	events := readEvents(t, admin, "/v1/events?after=0&type=approved", 1)
	if d, _ := events[0]["details"].(map[string]any); events[0]["node_id"] != first || d["actor"] != "token:"+operatorID+"/ci-operator" {
		t.Errorf("approval event %v, want node %s by token:%s/ci-operator", events[0], first, operatorID)
	}
	testBundleActors(t, l, addr, admin, as(operator), operator, first, "token:"+operatorID+"/ci-operator")
	testBerthctlTokens(t, l, addr, first, viewer, operator, adminTok)

	// Settings: a viewer reads them, an admin token changes them.
	code, body, _ = as(viewer).do(t, "GET", "/v1/settings/bundles", "")
	if st, _ := body["settings"].(map[string]any); code != http.StatusOK || st["approval"] != "auto" {
		t.Errorf("viewer GET /v1/settings/bundles: %d %v", code, body)
	}
	code, body, _ = as(adminTok).do(t, "PUT", "/v1/settings/bundles", `{"approval": "required"}`)
	if st, _ := body["settings"].(map[string]any); code != http.StatusOK || st["approval"] != "required" || st["updated_by"] != "token:"+adminTokID+"/root-engine" {
		t.Errorf("admin token PUT /v1/settings/bundles: %d %v", code, body)
	}
	code, body, _ = as(adminTok).do(t, "PUT", "/v1/settings/bundles", `{"approval": "sometimes"}`)
	wantStatus(t, "a bad approval policy", code, body, http.StatusBadRequest, 3, "approval must be required, auto or default")
	code, body, _ = as(adminTok).do(t, "PUT", "/v1/settings/heartbeat", `{"interval": "30s"}`)
	if code != http.StatusOK {
		t.Errorf("admin token PUT /v1/settings/heartbeat: %d %v", code, body)
	}
	code, body, _ = as(adminTok).do(t, "PUT", "/v1/settings/heartbeat", `{"interval": "30s", "grace": "31s"}`)
	wantStatus(t, "a grace shorter than two intervals", code, body, http.StatusBadRequest, 3, "grace")
	// Each change is an event naming the token, in its service's log and
	// in the long poll of all of them; the refused ones are not.
	byAdminTok := "token:" + adminTokID + "/root-engine"
	bs := readEvents(t, admin, "/v1/bundle-events?after=0&type=bundle_settings_changed", 1)
	if d, _ := bs[0]["details"].(map[string]any); bs[0]["node_id"] != "" || d["approval"] != "required" || d["actor"] != byAdminTok {
		t.Errorf("bundle settings event %v, want approval required by %s", bs[0], byAdminTok)
	}
	hs := readEvents(t, admin, "/v1/health-events?after=0&type=settings_changed", 1)
	if hs[0]["type"] != "HEALTH_EVENT_TYPE_SETTINGS_CHANGED" || hs[0]["interval"] != "30s" || hs[0]["grace"] == nil || hs[0]["actor"] != byAdminTok {
		t.Errorf("heartbeat settings event %v, want interval 30s by %s", hs[0], byAdminTok)
	}
	// A poll answers once the first service's events came: poll on from
	// its cursor until both logs' changes were seen.
	var polled []map[string]any
	seen := map[any]bool{}
	cursor := ""
	for range 10 {
		code, body = poll(t, admin, "wait=30s&type=settings_changed&type=bundle_settings_changed&after="+url.QueryEscape(cursor))
		if code != http.StatusOK {
			t.Fatalf("long poll of settings changes: %d %v", code, body)
		}
		for _, e := range pollEvents(t, body) {
			seen[e["type"]] = true
			polled = append(polled, e)
		}
		cursor, _ = body["cursor"].(string)
		if seen["settings_changed"] && seen["bundle_settings_changed"] {
			break
		}
	}
	if !seen["settings_changed"] || !seen["bundle_settings_changed"] || len(seen) != 2 {
		t.Fatalf("long polls of settings changes: %v, want both types and no other", polled)
	}
	for _, e := range polled {
		if d, _ := e["details"].(map[string]any); d["actor"] != byAdminTok || (e["type"] == "settings_changed" && d["interval"] != "30s") {
			t.Errorf("polled settings event %v, want it by %s", e, byAdminTok)
		}
	}

	// An admin token manages tokens; the list shows their last use.
	code, body, _ = as(adminTok).do(t, "GET", "/v1/api-tokens", "")
	if code != http.StatusOK {
		t.Fatalf("admin token GET /v1/api-tokens: %d %v", code, body)
	}
	listed := map[string]map[string]any{}
	for _, tk := range body["tokens"].([]any) {
		m := tk.(map[string]any)
		listed[m["id"].(string)] = m
	}
	if v := listed[viewerID]; v["role"] != "viewer" || v["name"] != "dashboard" || v["last_used_at"] == nil || v["created_by"] != "admin:admin" {
		t.Errorf("listed viewer token %v: want role, name, a last use and its creator", v)
	}
	if _, ok := listed[viewerID]["secret_token"]; ok {
		t.Error("the list shows a secret")
	}

	// gRPC on the same port, no client certificate: the same roles.
	conn := dialNoCert(t, l, addr)
	nodes := berthv1.NewNodeAdminServiceClient(conn)
	if _, err := nodes.ListNodes(withBearer(viewer), &berthv1.ListNodesRequest{}); err != nil {
		t.Errorf("viewer ListNodes over gRPC: %v", err)
	}
	_, err = nodes.RevokeNode(withBearer(viewer), &berthv1.RevokeNodeRequest{Id: first, Reason: "x"})
	grpctest.WantStatus(t, err, codes.PermissionDenied, "caller is not permitted to call this method")
	// A client cannot raise its role by naming a caller itself.
	ctx := metadata.AppendToOutgoingContext(withBearer(viewer), rpc.ForwardedCallerKey, "admin:admin")
	_, err = nodes.RevokeNode(ctx, &berthv1.RevokeNodeRequest{Id: first, Reason: "x"})
	grpctest.WantStatus(t, err, codes.PermissionDenied, "caller is not permitted to call this method")
	if _, err := nodes.RevokeNode(withBearer(operator), &berthv1.RevokeNodeRequest{Id: first, Reason: "retired"}); err != nil {
		t.Errorf("operator RevokeNode over gRPC: %v", err)
	}
	events = readEvents(t, admin, "/v1/events?after=0&type=revoked", 1)
	if d, _ := events[0]["details"].(map[string]any); d["actor"] != "token:"+operatorID+"/ci-operator" {
		t.Errorf("revocation event %v, want it by the operator's token", events[0])
	}
	_, err = nodes.ListNodes(context.Background(), &berthv1.ListNodesRequest{})
	grpctest.WantStatus(t, err, codes.Unauthenticated, "a client certificate or an API token is required")
	_, err = berthv1.NewHeartbeatAdminServiceClient(conn).SetHeartbeatSettings(withBearer(operator), &berthv1.SetHeartbeatSettingsRequest{})
	grpctest.WantStatus(t, err, codes.PermissionDenied, "caller is not permitted to call this method")

	// Refused credentials: 401 with WWW-Authenticate, each with its reason.
	_, unknown, _ := apitoken.Generate()
	_, expiring := createAPIToken(t, admin, `{"role": "admin", "ttl_seconds": 1}`)
	for _, c := range []struct {
		name, auth, msg string
	}{
		{"no credentials", "", "a client certificate or an API token"},
		{"another scheme", "Basic YWRtaW46YWRtaW4=", "Bearer TOKEN"},
		{"malformed", "Bearer not-a-token", apitoken.MsgMalformed},
		{"unknown", "Bearer " + unknown, apitoken.MsgUnknown},
		{"wrong secret", "Bearer " + viewer[:len(viewer)-4] + "0000", apitoken.MsgUnknown},
	} {
		code, body, h := bearer{restClient: anon, token: c.auth}.do(t, "GET", "/v1/nodes", "")
		wantStatus(t, c.name, code, body, http.StatusUnauthorized, 16, c.msg)
		if got := h.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q, want Bearer", c.name, got)
		}
	}
	code, body, _ = as(adminTok).do(t, "POST", "/v1/api-tokens/"+viewerID+":revoke", "")
	if tk, _ := body["token"].(map[string]any); code != http.StatusOK || tk["revoked"] != true {
		t.Fatalf("admin token revokes the viewer's: %d %v", code, body)
	}
	code, body, _ = as(viewer).do(t, "GET", "/v1/nodes", "")
	wantStatus(t, "revoked token", code, body, http.StatusUnauthorized, 16, apitoken.MsgRevoked)
	// Token changes are in the event log with who made them.
	created := readEvents(t, admin, "/v1/events?after=0&type=api_token_created", 3)
	if d, _ := created[0]["details"].(map[string]any); d["api_token"] != viewerID || d["role"] != "viewer" || d["actor"] != "admin:admin" {
		t.Errorf("api_token_created event %v, want the viewer's token by admin:admin", created[0])
	}
	revokedEv := readEvents(t, admin, "/v1/events?after=0&type=api_token_revoked", 1)
	if d, _ := revokedEv[0]["details"].(map[string]any); d["api_token"] != viewerID || d["actor"] != "token:"+adminTokID+"/root-engine" {
		t.Errorf("api_token_revoked event %v, want the viewer's token revoked by the admin token", revokedEv[0])
	}
	_, err = nodes.ListNodes(withBearer(viewer), &berthv1.ListNodesRequest{})
	grpctest.WantStatus(t, err, codes.Unauthenticated, apitoken.MsgRevoked)
	// The one-second token expires: waited for, not timed.
	deadline := time.Now().Add(time.Minute)
	for {
		code, body, _ = as(expiring).do(t, "GET", "/v1/nodes", "")
		if code == http.StatusUnauthorized || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	wantStatus(t, "expired token", code, body, http.StatusUnauthorized, 16, apitoken.MsgExpired)

	// A source that keeps presenting refused tokens is slowed down, by one
	// limit whatever it calls: refused at the web console's sign-in until
	// that answers 429 with Retry-After, it is then refused over REST
	// (429) and gRPC (ResourceExhausted) too, before its token, however
	// good, is looked at.
	signin := func(token string) (int, string, string) {
		t.Helper()
		resp, err := anon.http.PostForm(anon.base+"/ui/signin", url.Values{"token": {token}})
		if err != nil {
			t.Fatalf("POST /ui/signin: %v", err)
		}
		defer resp.Body.Close()
		page, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After"), string(page)
	}
	limited := false
	for range 30 {
		code, retry, page := signin("not-a-token")
		if code == http.StatusTooManyRequests {
			if n, err := strconv.Atoi(retry); err != nil || n < 1 || n > 60 || !strings.Contains(page, "too many refused API tokens") {
				t.Errorf("console sign-in over the limit: Retry-After %q, page %q", retry, page)
			}
			limited = true
			break
		}
		if code != http.StatusUnauthorized {
			t.Fatalf("console sign-in with a malformed token: %d, want 401", code)
		}
	}
	if !limited {
		t.Fatal("30 refused tokens in a row at the console's sign-in were never limited")
	}
	if code, retry, _ := signin(adminTok); code != http.StatusTooManyRequests || retry == "" {
		t.Errorf("console sign-in with a good token from a limited address: %d, Retry-After %q", code, retry)
	}
	code, body, _ = as(adminTok).do(t, "GET", "/v1/nodes", "")
	wantStatus(t, "REST from an address limited at the console", code, body, http.StatusTooManyRequests, 8, "too many refused API tokens")
	_, err = nodes.ListNodes(withBearer(adminTok), &berthv1.ListNodesRequest{})
	grpctest.WantStatus(t, err, codes.ResourceExhausted, apitoken.MsgTooManyFailures)
	// Certificates are not tokens: the admin's still works.
	if code, body := admin.do(t, "GET", "/v1/nodes", ""); code != http.StatusOK {
		t.Errorf("the admin certificate from a limited address: %d %v", code, body)
	}

	if reg != "" {
		// The services themselves take certificates only: a token is for
		// the front door.
		_, err := berthv1.NewNodeAdminServiceClient(dialNoCert(t, l, reg)).ListNodes(withBearer(adminTok), &berthv1.ListNodesRequest{})
		if err == nil {
			t.Error("the registration service took a token without a client certificate")
		}
		d := &deployment{layout: l, addrs: map[string]string{RoleRegistration: reg}}
		_, err = berthv1.NewNodeAdminServiceClient(d.dial(t, RoleRegistration, adminCert)).ListNodes(withBearer(adminTok), &berthv1.ListNodesRequest{})
		grpctest.WantCode(t, err, codes.Unauthenticated)
	} else {
		// A node's certificate still works on the front door's port.
		d := &deployment{layout: l, addrs: map[string]string{RoleRegistration: addr}}
		_, err := berthv1.NewNodeAdminServiceClient(d.dial(t, RoleRegistration, nodeCert(t, l, first))).ListNodes(context.Background(), &berthv1.ListNodesRequest{})
		grpctest.WantStatus(t, err, codes.PermissionDenied, "caller is not permitted to call this method")
	}

}

// testBundleActors: an operator's token puts a bundle (sealed and signed
// with the admin certificate, as berthctl bundles seal makes it), resets
// and deletes it, and the bundle log names the token as the actor of each.
func testBundleActors(t *testing.T, l *pki.Layout, addr string, admin *restClient, op bearer, token, node, actor string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "motd")
	if err := os.WriteFile(src, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, sealed, errOut := berthctl(t, l, addr, "bundles", "seal", "--node", node, "--file", src+"=etc/motd")
	if code != 0 {
		t.Fatalf("bundles seal: %d %s", code, errOut)
	}
	code, body, _ := op.do(t, "PUT", "/v1/nodes/"+node+"/bundle", fmt.Sprintf(`{"sealed": %q}`, base64.StdEncoding.EncodeToString([]byte(sealed))))
	if code != http.StatusOK {
		t.Fatalf("operator PUT bundle: %d %v", code, body)
	}
	code, body, _ = op.do(t, "POST", "/v1/nodes/"+node+"/bundle:reset", `{}`)
	if code != http.StatusOK {
		t.Fatalf("operator reset bundle: %d %v", code, body)
	}
	bundles := berthv1.NewBundleAdminServiceClient(dialNoCert(t, l, addr))
	if _, err := bundles.DeleteBundles(withBearer(token), &berthv1.DeleteBundlesRequest{NodeId: node}); err != nil {
		t.Fatalf("operator DeleteBundles over gRPC: %v", err)
	}
	evs := readEvents(t, admin, "/v1/bundle-events?after=0&node_id="+node, 3)
	for i, want := range []string{"bundle_updated", "bundle_reset", "bundle_deleted"} {
		if d, _ := evs[i]["details"].(map[string]any); evs[i]["type"] != want || d["actor"] != actor {
			t.Errorf("bundle event %d: %v, want %s by %s", i, evs[i], want, actor)
		}
	}
}

// berthctlWith runs berthctl in this process with exactly the environment
// given.
func berthctlWith(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Config{Getenv: func(k string) string { return env[k] }, Stdout: &out, Stderr: &errOut, Now: time.Now}.Run(t.Context(), args)
	return code, out.String(), errOut.String()
}

// testBerthctlTokens: berthctl presents an API token (BERTH_API_TOKEN, --token
// or --token-file) with no client certificate; each role may do what the
// matrix gives it, a refusal is a readable message and exit 1, and a token
// given with a certificate is a usage error (exit 2) that calls nothing.
func testBerthctlTokens(t *testing.T, l *pki.Layout, addr, node, viewer, operator, adminTok string) {
	t.Helper()
	env := func(tok string) map[string]string {
		return map[string]string{"BERTH_SERVER": addr, "BERTH_CA": l.AdminCAPath(), "BERTH_API_TOKEN": tok}
	}
	code, out, errOut := berthctlWith(t, env(viewer), "nodes", "get", node, "-o", "json")
	if code != 0 || !strings.Contains(out, `"id": "`+node+`"`) {
		t.Errorf("viewer nodes get: %d %q %q", code, out, errOut)
	}
	code, out, errOut = berthctlWith(t, env(viewer), "nodes", "approve", node)
	if code != 1 || out != "" || !strings.Contains(errOut, "caller is not permitted to call this method") ||
		!strings.Contains(errOut, "the role of the API token from BERTH_API_TOKEN does not allow this") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("viewer nodes approve: exit %d, stdout %q, stderr %q; want exit 1 and one line naming the token's role", code, out, errOut)
	}
	code, _, errOut = berthctlWith(t, env(operator), "settings", "set", "heartbeat-interval", "30s")
	if code != 1 || !strings.Contains(errOut, "does not allow this") {
		t.Errorf("operator settings set: exit %d, %q; want a refusal", code, errOut)
	}
	code, out, errOut = berthctlWith(t, env(operator), "nodes", "label", node, "rack=r1", "-o", "json")
	if code != 0 || !strings.Contains(out, `"rack": "r1"`) {
		t.Errorf("operator nodes label: %d %q %q", code, out, errOut)
	}
	// --token-file, and --token on the command line.
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(adminTok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fileEnv := env("")
	fileEnv["BERTH_API_TOKEN_FILE"] = file
	if code, _, errOut := berthctlWith(t, fileEnv, "settings", "set", "heartbeat-interval", "30s"); code != 0 {
		t.Errorf("admin token from BERTH_API_TOKEN_FILE, settings set: %d %q", code, errOut)
	}
	// BERTH_TOKEN is berth-agent's bootstrap token: a shell holding it
	// beside the admin certificate still acts as the certificate.
	agentShell := map[string]string{"BERTH_SERVER": addr, "BERTH_CA": l.AdminCAPath(), "BERTH_CERT": l.AdminCertPath(), "BERTH_KEY": l.AdminKeyPath(), "BERTH_TOKEN": viewer}
	if code, out, errOut := berthctlWith(t, agentShell, "api-tokens", "list", "-o", "json"); code != 0 || !strings.Contains(out, `"role": "viewer"`) {
		t.Errorf("admin certificate with the agent's BERTH_TOKEN set, api-tokens list: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := berthctlWith(t, env(""), "--token", adminTok, "api-tokens", "list", "-o", "json"); code != 0 || !strings.Contains(out, `"role": "viewer"`) {
		t.Errorf("admin --token, api-tokens list: %d %q %q", code, out, errOut)
	}
	events := readEvents(t, newRESTClient(t, l, addr, mustAdminCert(t, l)), "/v1/events?after=0&type=labeled", 1)
	if d, _ := events[0]["details"].(map[string]any); !strings.HasPrefix(fmt.Sprint(d["actor"]), "token:") {
		t.Errorf("labeled event %v, want it by the operator's token", events[0])
	}

	_, unknown, _ := apitoken.Generate()
	for _, c := range []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		msg      string
	}{
		{"an unknown token", env(unknown), []string{"nodes", "list"}, 1, apitoken.MsgUnknown + " (check the API token from BERTH_API_TOKEN"},
		{"a token and a certificate", map[string]string{"BERTH_SERVER": addr, "BERTH_CA": l.AdminCAPath(), "BERTH_CERT": l.AdminCertPath(), "BERTH_KEY": l.AdminKeyPath()},
			[]string{"--token", viewer, "nodes", "list"}, 2, "an API token (--token) and a client certificate (BERTH_CERT) are both set"},
		{"a token and a token file", fileEnv, []string{"--token", viewer, "nodes", "list"}, 2, "both --token and BERTH_API_TOKEN_FILE give an API token"},
		{"a token file that is not there", map[string]string{"BERTH_SERVER": addr, "BERTH_CA": l.AdminCAPath()},
			[]string{"--token-file", file + ".missing", "nodes", "list"}, 2, "read the API token from --token-file"},
		{"a token with a space", env(viewer + " x"), []string{"nodes", "list"}, 2, "has spaces or control characters"},
		{"a token without the CA", map[string]string{"BERTH_SERVER": addr, "BERTH_API_TOKEN": viewer}, []string{"nodes", "list"}, 2, "--ca or BERTH_CA"},
	} {
		code, out, errOut := berthctlWith(t, c.env, c.args...)
		if code != c.wantCode || out != "" || !strings.Contains(errOut, c.msg) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d saying %q", c.name, code, out, errOut, c.wantCode, c.msg)
		}
	}
}

func mustAdminCert(t *testing.T, l *pki.Layout) tls.Certificate {
	t.Helper()
	c, err := l.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return c
}
