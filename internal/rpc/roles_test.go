package rpc

import (
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/mtls"
)

// adminRole is the weakest role that may call each method of the admin
// API, written out method by method: the matrix must say the same. A new
// admin method fails TestAdminMethodRoles until it is given a role here.
var adminRole = map[string]mtls.Role{
	"/berth.v1.NodeAdminService/ListNodes":        mtls.RoleViewer,
	"/berth.v1.NodeAdminService/GetNode":          mtls.RoleViewer,
	"/berth.v1.NodeAdminService/ListCertificates": mtls.RoleViewer,
	"/berth.v1.NodeAdminService/ListTokens":       mtls.RoleViewer,
	"/berth.v1.NodeAdminService/WatchNodeEvents":  mtls.RoleViewer,
	"/berth.v1.NodeAdminService/ApproveNode":      mtls.RoleOperator,
	"/berth.v1.NodeAdminService/RejectNode":       mtls.RoleOperator,
	"/berth.v1.NodeAdminService/RevokeNode":       mtls.RoleOperator,
	"/berth.v1.NodeAdminService/DeleteNode":       mtls.RoleOperator,
	"/berth.v1.NodeAdminService/AllowReplacement": mtls.RoleOperator,
	"/berth.v1.NodeAdminService/LabelNode":        mtls.RoleOperator,
	"/berth.v1.NodeAdminService/ImportEKs":        mtls.RoleOperator,
	"/berth.v1.NodeAdminService/ListPCRPolicies":  mtls.RoleViewer,
	"/berth.v1.NodeAdminService/SetPCRPolicy":     mtls.RoleAdmin,
	"/berth.v1.NodeAdminService/DeletePCRPolicy":  mtls.RoleAdmin,
	"/berth.v1.NodeAdminService/CreateToken":      mtls.RoleAdmin,
	"/berth.v1.NodeAdminService/RevokeToken":      mtls.RoleAdmin,

	"/berth.v1.APITokenService/CreateAPIToken": mtls.RoleAdmin,
	"/berth.v1.APITokenService/ListAPITokens":  mtls.RoleAdmin,
	"/berth.v1.APITokenService/RevokeAPIToken": mtls.RoleAdmin,

	"/berth.v1.BundleAdminService/GetBundleInfo":     mtls.RoleViewer,
	"/berth.v1.BundleAdminService/ListBundleHistory": mtls.RoleViewer,
	"/berth.v1.BundleAdminService/GetSealedBundle":   mtls.RoleViewer,
	"/berth.v1.BundleAdminService/ListSealedBundles": mtls.RoleViewer,
	"/berth.v1.BundleAdminService/WatchBundleEvents": mtls.RoleViewer,
	"/berth.v1.BundleAdminService/PutBundle":         mtls.RoleOperator,
	"/berth.v1.BundleAdminService/ApproveBundle":     mtls.RoleOperator,
	"/berth.v1.BundleAdminService/ResetBundle":       mtls.RoleOperator,
	"/berth.v1.BundleAdminService/DeleteBundles":     mtls.RoleOperator,
	"/berth.v1.BundleAdminService/GetBundleSettings": mtls.RoleViewer,
	"/berth.v1.BundleAdminService/SetBundleSettings": mtls.RoleAdmin,

	"/berth.v1.HeartbeatAdminService/GetNodeHealth":        mtls.RoleViewer,
	"/berth.v1.HeartbeatAdminService/ListNodeHealth":       mtls.RoleViewer,
	"/berth.v1.HeartbeatAdminService/WatchHealth":          mtls.RoleViewer,
	"/berth.v1.HeartbeatAdminService/GetHeartbeatSettings": mtls.RoleViewer,
	"/berth.v1.HeartbeatAdminService/SetHeartbeatSettings": mtls.RoleAdmin,
	// A sign-in link signs its asker in to the web console as themselves.
	"/berth.v1.ConsoleAdminService/CreateSignInLink": mtls.RoleAdmin,

	"/berth.v1.CertificateAuthorityService/ListIssued":     mtls.RoleAdmin,
	"/berth.v1.CertificateAuthorityService/GetRevocations": mtls.RoleAdmin,
}

// isAdminAPI reports whether a method is the admin API's: every method of
// an *AdminService and of APITokenService but the front door's check.
func isAdminAPI(meth string) bool {
	svc := strings.Split(meth, "/")[1]
	return strings.HasSuffix(svc, "AdminService") ||
		(svc == "berth.v1.APITokenService" && !strings.HasSuffix(meth, "/AuthenticateAPIToken"))
}

// TestAdminMethodRoles checks every admin method against every caller of
// the admin API: the admin certificate, and a token of each role (and of
// none). A role may call a method when it is at least the method's role.
func TestAdminMethodRoles(t *testing.T) {
	m := Matrix()
	callers := []struct {
		name string
		id   mtls.Identity
	}{
		{"admin certificate", mtls.Identity{Kind: mtls.KindAdmin, Name: "admin"}},
		{"admin token", mtls.Identity{Kind: mtls.KindToken, Name: "0123456789abcdef", Role: mtls.RoleAdmin}},
		{"operator token", mtls.Identity{Kind: mtls.KindToken, Name: "0123456789abcdef", Role: mtls.RoleOperator}},
		{"viewer token", mtls.Identity{Kind: mtls.KindToken, Name: "0123456789abcdef", Role: mtls.RoleViewer}},
		{"token without a role", mtls.Identity{Kind: mtls.KindToken, Name: "0123456789abcdef"}},
	}
	for _, meth := range berthMethods(t) {
		if !isAdminAPI(meth) {
			continue
		}
		want, ok := adminRole[meth]
		if !ok {
			t.Errorf("%s: admin method without a role in adminRole", meth)
			continue
		}
		for _, c := range callers {
			allowed := m[meth].Allows(c.id)
			if should := mtls.RoleOf(c.id) >= want && mtls.RoleOf(c.id) != mtls.RoleNone; allowed != should {
				t.Errorf("%s by %s: allowed %v, want %v (method role %s)", meth, c.name, allowed, should, want)
			}
		}
	}
	for meth, want := range adminRole {
		if !isAdminAPI(meth) && !slices.Contains([]string{"ListIssued", "GetRevocations"}, meth[strings.LastIndex(meth, "/")+1:]) {
			t.Errorf("adminRole lists %s, which is not an admin method", meth)
		}
		if want == mtls.RoleNone {
			t.Errorf("%s: RoleNone", meth)
		}
	}
}

// TestNoTokenReachesNodeOrServiceMethods: nothing but the admin API (and
// the probes everyone may call) is open to an API token of any role.
func TestNoTokenReachesNodeOrServiceMethods(t *testing.T) {
	for meth, c := range Matrix() {
		if !strings.HasPrefix(meth, "/berth.v1.") || isAdminAPI(meth) || meth == "/berth.v1.VersionService/GetVersion" {
			continue
		}
		for _, r := range mtls.Roles() {
			id := mtls.Identity{Kind: mtls.KindToken, Name: "0123456789abcdef", Role: r}
			if c.Allows(id) && c != FromAnyone && !strings.HasPrefix(meth, "/berth.v1.CertificateAuthorityService/") {
				t.Errorf("%s allows a %s token", meth, r)
			}
		}
	}
}
