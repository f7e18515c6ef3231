package rpc

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// berthMethods lists every method of every service in berth.v1, from the
// registered descriptors, so that a method added to a .proto file is seen
// here without anyone listing it.
func berthMethods(t *testing.T) []string {
	t.Helper()
	_ = berthv1.File_berth_v1_ca_proto // registers berth.v1
	var methods []string
	protoregistry.GlobalFiles.RangeFilesByPackage("berth.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				methods = append(methods, "/"+string(sd.FullName())+"/"+string(sd.Methods().Get(j).Name()))
			}
		}
		return true
	})
	if len(methods) < 30 {
		t.Fatalf("found only %d berth.v1 methods", len(methods))
	}
	return methods
}

// TestMatrixCoversEveryMethod: a berth method without a row is denied to
// everyone, which is safe but surely not meant; a row without a method is
// stale.
func TestMatrixCoversEveryMethod(t *testing.T) {
	m := Matrix()
	methods := berthMethods(t)
	for _, meth := range methods {
		if m[meth] == 0 {
			t.Errorf("%s has no row in the authorisation matrix", meth)
		}
	}
	for row := range m {
		if strings.HasPrefix(row, "/berth.v1.") && !slices.Contains(methods, row) {
			t.Errorf("matrix row %s is no method of berth.v1", row)
		}
	}
}

// TestMatrixInvariants states the security properties the matrix must
// have, independently of how its rows are written.
func TestMatrixInvariants(t *testing.T) {
	m := Matrix()
	rows := slices.Sorted(maps.Keys(m))
	services := FromRegistration | FromCA | FromBundles | FromHeartbeat | FromAPI
	for _, meth := range rows {
		c := m[meth]
		svc := strings.Split(meth, "/")[1]
		switch {
		case strings.HasSuffix(meth, "/Sign"), strings.HasSuffix(meth, "/Revoke"), strings.HasSuffix(meth, "/RevokeNodeCertificates"):
			if c != FromRegistration {
				t.Errorf("%s: only registration may have the CA sign or revoke, not %b", meth, c)
			}
		case strings.HasSuffix(svc, "AdminService"):
			// Admin APIs: the admin, and registration only where it acts
			// on a node's bundles.
			if c&FromAdmin == 0 || c&(FromNode|FromBareKey) != 0 {
				t.Errorf("%s: admin API allows %b", meth, c)
			}
			// The heartbeat service follows bundle events alone, to tell
			// nodes of their new bundles; registration follows them too,
			// to drop the bundles it keeps for Resume.
			if o := c & services; o != 0 && !(o == FromRegistration && svc == "berth.v1.BundleAdminService") &&
				!(o == FromHeartbeat|FromRegistration && meth == "/berth.v1.BundleAdminService/WatchBundleEvents") {
				t.Errorf("%s: admin API allows services %b", meth, o)
			}
		}
		// The agent's local API is for local callers alone, and nothing
		// else is: no certificate reaches it, and it reaches nothing of
		// the servers'.
		if (svc == "berth.v1.AgentService") != (c == FromLocal) || (c&FromLocal != 0 && c != FromLocal) {
			t.Errorf("%s: allows %b; the agent's local API, and only it, is for local callers only", meth, c)
		}
		if c&FromBareKey != 0 && c != FromAnyone && c != FromNode|FromBareKey {
			t.Errorf("%s: a bare key is allowed along with some authenticated callers only: %b", meth, c)
		}
		if c&FromBareKey != 0 && strings.HasPrefix(meth, "/berth.v1.") &&
			!slices.Contains([]string{"Register", "Resume", "Renew", "GetTrustBundle", "GetCRL"}, meth[strings.LastIndex(meth, "/")+1:]) {
			t.Errorf("%s: open to bare keys", meth)
		}
	}
	if got := m[berthv1.CertificateAuthorityService_RevokeNodeCertificates_FullMethodName]; got != FromRegistration {
		t.Errorf("RevokeNodeCertificates allows %b; want registration alone", got)
	}
	if got := m[berthv1.NodeAdminService_ListCertificates_FullMethodName]; got != Viewers {
		t.Errorf("ListCertificates allows %b; want every admin API role", got)
	}
	for _, meth := range []string{berthv1.APITokenService_CreateAPIToken_FullMethodName, berthv1.APITokenService_ListAPITokens_FullMethodName,
		berthv1.APITokenService_RevokeAPIToken_FullMethodName} {
		if got := m[meth]; got != FromAdmin {
			t.Errorf("%s allows %b; want the admin role alone", meth, got)
		}
	}
	if got := m[berthv1.APITokenService_AuthenticateAPIToken_FullMethodName]; got != FromAPI {
		t.Errorf("AuthenticateAPIToken allows %b; want the front door alone", got)
	}
	if got := m[berthv1.CertificateAuthorityService_GetRevocations_FullMethodName]; got != FromRegistration|FromBundles|FromHeartbeat|FromAdmin {
		t.Errorf("GetRevocations allows %b; want the services that enforce revocation and the admin", got)
	}
}

func TestCallerOf(t *testing.T) {
	tests := []struct {
		id   mtls.Identity
		want Callers
	}{
		{mtls.Identity{Kind: mtls.KindService, Name: "registration"}, FromRegistration},
		{mtls.Identity{Kind: mtls.KindService, Name: "ca"}, FromCA},
		{mtls.Identity{Kind: mtls.KindService, Name: "bundles"}, FromBundles},
		{mtls.Identity{Kind: mtls.KindService, Name: "heartbeat"}, FromHeartbeat},
		{mtls.Identity{Kind: mtls.KindService, Name: "api"}, FromAPI},
		{mtls.Identity{Kind: mtls.KindService, Name: "dns"}, 0},
		{mtls.Identity{Kind: mtls.KindAdmin, Name: "admin"}, FromAdmin},
		{mtls.Identity{Kind: mtls.KindNode, Name: "n1"}, FromNode},
		{mtls.Identity{Kind: mtls.KindBootstrap}, FromBareKey},
		{mtls.Identity{Kind: mtls.KindToken, Name: "0123456789abcdef", Role: mtls.RoleAdmin}, FromAdmin},
		{mtls.Identity{Kind: mtls.KindToken, Name: "0123456789abcdef", Role: mtls.RoleOperator}, FromOperator},
		{mtls.Identity{Kind: mtls.KindToken, Name: "0123456789abcdef", Role: mtls.RoleViewer}, FromViewer},
		{mtls.Identity{Kind: mtls.KindToken, Name: "0123456789abcdef"}, 0},
		{mtls.Identity{Kind: mtls.KindUnknown}, 0},
	}
	for _, tt := range tests {
		if got := CallerOf(tt.id); got != tt.want {
			t.Errorf("CallerOf(%v) = %b, want %b", tt.id, got, tt.want)
		}
		if FromLocal.Allows(tt.id) {
			t.Errorf("FromLocal.Allows(%v): a certificate made a caller local", tt.id)
		}
		if FromAnyone.Allows(tt.id) != (tt.want != 0) {
			t.Errorf("FromAnyone.Allows(%v) = %v", tt.id, !(tt.want != 0))
		}
	}
}

func TestPolicyFor(t *testing.T) {
	p := PolicyFor(berthv1.CertificateAuthorityService_ServiceDesc.ServiceName)
	if len(p) != len(berthv1.CertificateAuthorityService_ServiceDesc.Methods) {
		t.Fatalf("PolicyFor(CA) has %d rows", len(p))
	}
	sign := p[berthv1.CertificateAuthorityService_Sign_FullMethodName]
	if sign == nil || !sign(mtls.Identity{Kind: mtls.KindService, Name: "registration"}) || sign(mtls.Identity{Kind: mtls.KindAdmin}) {
		t.Error("the Sign rule is wrong")
	}
}
