package daemon

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestRESTPCRPolicies: the PCR policy RPCs through the front door's REST
// routes, with the admin certificate: set, list, a bad digest, delete.
func TestRESTPCRPolicies(t *testing.T) {
	l := newPKI(t, "")
	addr := serve(t, Config{Role: RoleAll, PKIDir: l.Dir})
	adminCert, err := l.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	admin := newRESTClient(t, l, addr, adminCert)
	digest := "sha256:" + strings.Repeat("ab", 32)

	code, body := admin.do(t, "POST", "/v1/pcr-policies", `{"policy": {"label": "image=node-4.5", "digests": ["`+digest+`"], "enforce": true}}`)
	if p, _ := body["policy"].(map[string]any); code != http.StatusOK || p["label"] != "image=node-4.5" || p["enforce"] != true ||
		fmt.Sprint(p["digests"]) != "["+digest+"]" {
		t.Fatalf("POST /v1/pcr-policies: %d %v", code, body)
	}
	code, body = admin.do(t, "GET", "/v1/pcr-policies", "")
	if ps, _ := body["policies"].([]any); code != http.StatusOK || len(ps) != 1 {
		t.Errorf("GET /v1/pcr-policies: %d %v, want the policy", code, body)
	}
	code, body = admin.do(t, "POST", "/v1/pcr-policies", `{"policy": {"label": "image=node-4.5", "digests": ["sha256:abcd"]}}`)
	wantStatus(t, "a short digest", code, body, http.StatusBadRequest, 3, `policy.digests must each be "sha256:" and 64 lower-case hex digits`)
	code, body = admin.do(t, "POST", "/v1/pcr-policies:delete", `{"label": "image=node-4.5"}`)
	if code != http.StatusOK {
		t.Errorf("POST /v1/pcr-policies:delete: %d %v", code, body)
	}
	code, body = admin.do(t, "POST", "/v1/pcr-policies:delete", `{"label": "image=node-4.5"}`)
	wantStatus(t, "deleting it again", code, body, http.StatusNotFound, 5, "no PCR policy for this label")
}
