package daemon

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hpke"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/gateway"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// restClient is an HTTPS client of the front door presenting cert (none
// when cert is empty), with HTTP/2 and HTTP/1.1 offered as curl does.
type restClient struct {
	base string
	http *http.Client
}

func newRESTClient(t testing.TB, l *pki.Layout, addr string, cert tls.Certificate) *restClient {
	t.Helper()
	cfg := &tls.Config{RootCAs: l.RootPool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
	if len(cert.Certificate) > 0 {
		cfg.Certificates = []tls.Certificate{cert}
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &restClient{base: "https://" + addr, http: &http.Client{Transport: tr, Timeout: time.Minute}}
}

// do sends a request and returns the status code and the decoded JSON body.
func (c *restClient) do(t testing.TB, method, path, body string) (int, map[string]any) {
	t.Helper()
	code, raw := c.raw(t, method, path, body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: %d, body not JSON: %v: %q", method, path, code, err, raw)
	}
	return code, out
}

func (c *restClient) raw(t testing.TB, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, raw
}

// wantStatus checks a google.rpc.Status answer.
func wantStatus(t *testing.T, what string, code int, body map[string]any, wantHTTP int, wantCode float64, msgPart string) {
	t.Helper()
	if code != wantHTTP || body["code"] != wantCode || !strings.Contains(fmt.Sprint(body["message"]), msgPart) {
		t.Errorf("%s: HTTP %d %v, want HTTP %d with a google.rpc.Status of code %v saying %q", what, code, body, wantHTTP, wantCode, msgPart)
	}
}

// registerPending registers a node with a token made over REST, through
// the gRPC registration API on the same port, and returns its ID.
func registerPending(t *testing.T, l *pki.Layout, addr string, admin *restClient) string {
	t.Helper()
	code, tok := admin.do(t, "POST", "/v1/tokens", `{"ttl_seconds": 600, "description": "rest test"}`)
	if code != http.StatusOK {
		t.Fatalf("POST /v1/tokens: %d %v", code, tok)
	}
	key := grpctest.NewKey(t)
	self, err := mtls.SelfSigned(key)
	if err != nil {
		t.Fatal(err)
	}
	bk, err := hpke.MLKEM768X25519().GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	d := &deployment{layout: l, addrs: map[string]string{RoleRegistration: addr}}
	resp, err := berthv1.NewRegistrationServiceClient(d.dial(t, RoleRegistration, self)).Register(context.Background(), &berthv1.RegisterRequest{
		Facts:          &berthv1.MachineFacts{HardwareUuid: "0f5f1c8e-7a7e-4c55-9d0e-6a4f3c2b1a00", Hostname: "rest-node", Macs: []string{"02:00:00:00:00:01"}},
		Csr:            grpctest.CSR(t, key, nil),
		BundleKey:      &berthv1.BundleKey{KemId: uint32(bk.KEM().ID()), PublicKey: bk.PublicKey().Bytes()},
		Token:          tok["secret_token"].(string),
		IdentitySource: "seed-file",
	})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if resp.GetCredentials().GetStatus() != berthv1.NodeStatus_NODE_STATUS_PENDING {
		t.Fatalf("registered node is %v, want pending", resp.GetCredentials().GetStatus())
	}
	return resp.GetCredentials().GetNodeId()
}

func nodeIDs(body map[string]any) []string {
	var ids []string
	nodes, _ := body["nodes"].([]any)
	for _, n := range nodes {
		ids = append(ids, fmt.Sprint(n.(map[string]any)["id"]))
	}
	return ids
}

// TestRESTFrontDoor drives the admin API over HTTPS/JSON on the gRPC port
// of a process serving every role, on SQLite and on PostgreSQL: list,
// approve and revoke a node, the events that records, and the answers to
// bad input, bad callers and a database that went away.
func TestRESTFrontDoor(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		l := newPKI(t, "")
		testREST(t, l, serve(t, Config{Role: RoleAll, PKIDir: l.Dir}))
	})
	t.Run("postgres", func(t *testing.T) {
		cluster := pgtest.NewCluster(t)
		l := newPKI(t, "")
		addr := serve(t, Config{Role: RoleAll, PKIDir: l.Dir, DB: cluster.DSN()})
		testREST(t, l, addr)

		// The database goes away: REST answers 503 Unavailable, which
		// clients retry, not 500.
		cluster.Stop(t)
		adminCert, err := l.AdminCertificate()
		if err != nil {
			t.Fatal(err)
		}
		code, body := newRESTClient(t, l, addr, adminCert).do(t, "GET", "/v1/nodes", "")
		wantStatus(t, "list with the database down", code, body, http.StatusServiceUnavailable, 14, "")
	})
}

func testREST(t *testing.T, l *pki.Layout, addr string) {
	adminCert, err := l.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	admin := newRESTClient(t, l, addr, adminCert)
	id := registerPending(t, l, addr, admin)

	code, body := admin.do(t, "GET", "/v1/nodes?status=pending", "")
	if code != http.StatusOK || strings.Join(nodeIDs(body), ",") != id {
		t.Fatalf("GET /v1/nodes?status=pending: %d %v, want node %s", code, body, id)
	}
	code, body = admin.do(t, "GET", "/v1/nodes?status=NODE_STATUS_APPROVED", "")
	if code != http.StatusOK || len(nodeIDs(body)) != 0 {
		t.Errorf("GET /v1/nodes?status=NODE_STATUS_APPROVED: %d %v, want no nodes", code, body)
	}
	code, body = admin.do(t, "POST", "/v1/nodes/"+id+":approve", "")
	if node, _ := body["node"].(map[string]any); code != http.StatusOK || node["status"] != "NODE_STATUS_APPROVED" {
		t.Fatalf("approve: %d %v", code, body)
	}
	code, body = admin.do(t, "GET", "/v1/nodes/"+id, "")
	if node, _ := body["node"].(map[string]any); code != http.StatusOK || node["status"] != "NODE_STATUS_APPROVED" || node["certificates_issued"] != "0" {
		t.Errorf("GET /v1/nodes/%s after approval: %d %v", id, code, body)
	}
	code, body = admin.do(t, "POST", "/v1/nodes/"+id+":revoke", `{"reason": "decommissioned"}`)
	if node, _ := body["node"].(map[string]any); code != http.StatusOK || node["status"] != "NODE_STATUS_REVOKED" {
		t.Fatalf("revoke: %d %v", code, body)
	}
	// Final: a revoked node cannot be approved again, and the refusal says so.
	code, body = admin.do(t, "POST", "/v1/nodes/"+id+":approve", "")
	if code != http.StatusBadRequest || body["code"] != float64(9) {
		t.Errorf("approving a revoked node: %d %v, want 400 FailedPrecondition", code, body)
	}

	// The event log, as a stream of JSON objects, records who acted.
	events := readEvents(t, admin, "/v1/events?after=0&type=approved&type=revoked", 2)
	for i, want := range []string{"approved", "revoked"} {
		if events[i]["type"] != want || events[i]["node_id"] != id {
			t.Errorf("event %d: %v, want %s of %s", i, events[i], want, id)
		}
		if d, _ := events[i]["details"].(map[string]any); d["actor"] != "admin:admin" {
			t.Errorf("event %d is by %v, want the admin the front door authenticated (admin:admin)", i, d["actor"])
		}
	}

	// Bad input: precise status, nothing changed.
	code, body = admin.do(t, "GET", "/v1/nodes/Not_A_Node", "")
	wantStatus(t, "bad node ID", code, body, http.StatusBadRequest, 3, "id must match")
	code, body = admin.do(t, "POST", "/v1/nodes/Not_A_Node:approve", "")
	wantStatus(t, "approve a bad node ID", code, body, http.StatusBadRequest, 3, "id must match")
	code, body = admin.do(t, "GET", "/v1/nodes/no-such-node", "")
	wantStatus(t, "unknown node", code, body, http.StatusNotFound, 5, "not found")
	code, body = admin.do(t, "POST", "/v1/nodes/no-such-node:revoke", `{"reason": "x"}`)
	wantStatus(t, "revoke an unknown node", code, body, http.StatusNotFound, 5, "not found")
	code, body = admin.do(t, "POST", "/v1/tokens", `{"ttl_seconds": "soon"}`)
	wantStatus(t, "token with a bad TTL", code, body, http.StatusBadRequest, 3, "")
	code, body = admin.do(t, "GET", "/v1/nodes?status=sleeping", "")
	wantStatus(t, "unknown status filter", code, body, http.StatusBadRequest, 3, "")

	// Bad callers: none, a node, a foreign admin, a bare key.
	self, err := mtls.SelfSigned(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	other, err := newPKI(t, "other.example").AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		cert     tls.Certificate
		wantHTTP int
		wantCode float64
	}{
		{"no client certificate", tls.Certificate{}, http.StatusUnauthorized, 16},
		{"a bare key", self, http.StatusUnauthorized, 16},
		{"another deployment's admin", other, http.StatusUnauthorized, 16},
		{"a node", nodeCert(t, l, id), http.StatusForbidden, 7},
	} {
		cl := newRESTClient(t, l, addr, c.cert)
		for _, call := range []struct{ method, path string }{{"GET", "/v1/nodes"}, {"POST", "/v1/nodes/" + id + ":approve"}, {"POST", "/v1/tokens"}} {
			code, body := cl.do(t, call.method, call.path, "")
			wantStatus(t, c.name+" "+call.method+" "+call.path, code, body, c.wantHTTP, c.wantCode, "")
		}
	}
	// A client cannot name a caller itself: the header the front door uses
	// towards the services is not passed through.
	code, body = newRESTClient(t, l, addr, nodeCert(t, l, "node-2")).doHeader(t, "GET", "/v1/nodes", "Grpc-Metadata-Berth-On-Behalf-Of", "admin:admin")
	wantStatus(t, "a node naming itself an admin", code, body, http.StatusForbidden, 7, "")

	// The OpenAPI document is the committed one, served to anyone.
	committed, err := os.ReadFile("../gateway/openapi.swagger.json")
	if err != nil {
		t.Fatal(err)
	}
	code, raw := newRESTClient(t, l, addr, tls.Certificate{}).raw(t, "GET", gateway.OpenAPIPath, "")
	if code != http.StatusOK || !bytes.Equal(raw, committed) {
		t.Errorf("GET %s: %d, %d bytes; want the committed document (%d bytes)", gateway.OpenAPIPath, code, len(raw), len(committed))
	}
	var doc struct {
		Swagger string                    `json:"swagger"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || doc.Swagger != "2.0" {
		t.Fatalf("the OpenAPI document is not OpenAPI 2.0 JSON: %v", err)
	}
	for path, method := range map[string]string{"/v1/nodes": "get", "/v1/nodes/{id}": "get", "/v1/nodes/{id}:approve": "post", "/v1/events": "get", "/v1/certificates": "get"} {
		if _, ok := doc.Paths[path][method]; !ok {
			t.Errorf("the OpenAPI document lacks %s %s", strings.ToUpper(method), path)
		}
	}
	checkLongPollDocumented(t, raw, admin)

	// gRPC keeps working on the same port.
	d := &deployment{layout: l, addrs: map[string]string{RoleRegistration: addr}}
	got, err := berthv1.NewNodeAdminServiceClient(d.dial(t, RoleRegistration, adminCert)).GetNode(context.Background(), &berthv1.GetNodeRequest{Id: id})
	if err != nil || got.GetNode().GetStatus() != berthv1.NodeStatus_NODE_STATUS_REVOKED {
		t.Errorf("GetNode over gRPC on the REST port: %v, %v", got, err)
	}
}

func (c *restClient) doHeader(t *testing.T, method, path, key, value string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, c.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(key, value)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// readEvents reads n events from a REST event stream, then hangs up.
func readEvents(t *testing.T, c *restClient, path string, n int) []map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	var out []map[string]any
	sc := bufio.NewScanner(resp.Body)
	for len(out) < n && sc.Scan() {
		var line struct {
			Result struct {
				Event map[string]any `json:"event"`
			} `json:"result"`
			Error map[string]any `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("event line %q: %v", sc.Text(), err)
		}
		if line.Error != nil {
			t.Fatalf("event stream error: %v", line.Error)
		}
		out = append(out, line.Result.Event)
	}
	if len(out) < n {
		t.Fatalf("event stream ended after %d events, want %d: %v", len(out), n, sc.Err())
	}
	return out
}

// checkLongPollDocumented: the document describes GET /v1/events?wait=D,
// the front door's long poll, which no proto declares (make generate adds
// it, internal/gateway/openapigen): its query parameters, and an answer
// whose fields are the ones a served poll has, no more and no fewer.
func checkLongPollDocumented(t *testing.T, raw []byte, admin *restClient) {
	t.Helper()
	type schema struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name, In, Type string
			} `json:"parameters"`
			Responses map[string]struct {
				Schema schema `json:"schema"`
			} `json:"responses"`
		} `json:"paths"`
		Definitions map[string]schema `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	get := doc.Paths["/v1/events"]["get"]
	params := map[string]string{}
	for _, p := range get.Parameters {
		if p.In == "query" {
			params[p.Name] = p.Type
		}
	}
	for name, typ := range map[string]string{"wait": "string", "after": "string", "from_now": "boolean", "service": "array", "type": "array", "node_id": "array"} {
		if params[name] != typ {
			t.Errorf("GET /v1/events in the OpenAPI document: query parameter %s is %q, want %s", name, params[name], typ)
		}
	}
	// A served poll, with events (the test made some).
	code, answer := admin.do(t, "GET", "/v1/events?wait=1s&after=registration=0", "")
	events := pollEvents(t, answer)
	if code != http.StatusOK || len(events) == 0 {
		t.Fatalf("long poll: %d %v", code, answer)
	}
	documented := get.Responses["200"].Schema.Properties
	for k := range answer {
		if _, ok := documented[k]; !ok {
			t.Errorf("the long poll's answer has %q, which the document's 200 answer of GET /v1/events lacks", k)
		}
	}
	for _, k := range []string{"events", "cursor"} {
		if _, ok := answer[k]; !ok {
			t.Errorf("the document's long poll answer has %q, which the served one lacks", k)
		}
	}
	eventProps := doc.Definitions["PollEvent"].Properties
	if len(eventProps) == 0 {
		t.Fatal("the OpenAPI document has no PollEvent definition")
	}
	for _, e := range events {
		for k := range e {
			if _, ok := eventProps[k]; !ok {
				t.Errorf("a polled event has %q, which PollEvent lacks", k)
			}
		}
		for k := range eventProps {
			if _, ok := e[k]; !ok {
				t.Errorf("PollEvent has %q, which a polled event lacks: %v", k, e)
			}
		}
	}
}
