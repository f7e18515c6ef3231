package rpc

import (
	"strings"

	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Callers is a set of the kinds of caller that authorisation tells apart:
// each berth service by its own identity, the admin API's callers by role
// (an admin certificate or an admin API token, an operator token, a
// viewer token), a node holding a certificate issued by berth, and a bare
// key (a node before it holds a certificate, or any certificate this
// deployment's CA did not issue, such as another trust domain's).
type Callers uint16

// The kinds of caller.
const (
	FromRegistration Callers = 1 << iota
	FromCA
	FromBundles
	FromHeartbeat
	// FromAPI is the front door's service identity.
	FromAPI
	// FromAdmin is the admin role: the admin client certificate, or an API
	// token created with role admin.
	FromAdmin
	FromNode
	FromBareKey
	// FromLocal is a process on the node itself, calling berth-agent's
	// local API over its unix socket: the socket's file mode and group
	// decide who that may be. No certificate makes a caller local, and no
	// berth server serves these methods on the network.
	FromLocal
	// FromOperator and FromViewer are API tokens of those roles.
	FromOperator
	FromViewer

	// Viewers are the admin API's readers: every role. Operators are
	// those who may also act on nodes and bundles. Admins alone (FromAdmin)
	// manage tokens and settings.
	Viewers   = FromAdmin | FromOperator | FromViewer
	Operators = FromAdmin | FromOperator

	// FromAuthenticated is every caller whose certificate this deployment
	// issued, and every API token.
	FromAuthenticated = FromRegistration | FromCA | FromBundles | FromHeartbeat | FromAPI | FromAdmin | FromNode |
		FromOperator | FromViewer
	// FromAnyone adds bare keys: every caller with a client certificate
	// or an API token.
	FromAnyone = FromAuthenticated | FromBareKey
)

// CallerOf returns the kind of a verified caller; 0 for a service name
// berth does not know.
func CallerOf(id mtls.Identity) Callers {
	switch id.Kind {
	case mtls.KindAdmin:
		return FromAdmin
	case mtls.KindNode:
		return FromNode
	case mtls.KindBootstrap:
		return FromBareKey
	case mtls.KindToken:
		switch id.Role {
		case mtls.RoleAdmin:
			return FromAdmin
		case mtls.RoleOperator:
			return FromOperator
		case mtls.RoleViewer:
			return FromViewer
		}
	case mtls.KindService:
		switch id.Name {
		case mtls.ServiceRegistration:
			return FromRegistration
		case mtls.ServiceCA:
			return FromCA
		case mtls.ServiceBundles:
			return FromBundles
		case mtls.ServiceHeartbeat:
			return FromHeartbeat
		case mtls.ServiceAPI:
			return FromAPI
		}
	}
	return 0
}

// Allows reports whether the set holds the caller's kind.
func (c Callers) Allows(id mtls.Identity) bool {
	k := CallerOf(id)
	return k != 0 && c&k == k
}

// Rule returns the set as a policy rule.
func (c Callers) Rule() Rule { return c.Allows }

// Matrix is berth's authorisation matrix: for every method of every
// service a berth server serves, who may call it. It is the one place
// where that is decided; each service's Policy is its rows, and a method
// without a row is denied to everyone. A denied caller gets
// PermissionDenied, or Unauthenticated when its certificate is not this
// deployment's.
//
// The admin API's rows give the weakest role that may call each method
// (DESIGN.md, "API tokens and roles"): Viewers read; Operators also
// approve, reject, revoke and delete nodes, enrol EKs and manage bundles;
// FromAdmin alone manages bootstrap tokens, API tokens, settings and PCR
// policies.
func Matrix() map[string]Callers {
	const (
		ca        = "/berth.v1.CertificateAuthorityService/"
		apiTokens = "/berth.v1.APITokenService/"
		sessions  = "/berth.v1.ConsoleSessionService/"
		reg       = "/berth.v1.RegistrationService/"
		nodes     = "/berth.v1.NodeAdminService/"
		bundle    = "/berth.v1.BundleService/"
		bundles   = "/berth.v1.BundleAdminService/"
		hb        = "/berth.v1.HeartbeatService/"
		hbAdmin   = "/berth.v1.HeartbeatAdminService/"
		agent     = "/berth.v1.AgentService/"
		health    = "/grpc.health.v1.Health/"
		refl      = "/grpc.reflection.v1.ServerReflection/"
		reflAlpha = "/grpc.reflection.v1alpha.ServerReflection/"
	)
	// The services that enforce revocation read it; only registration,
	// which decides who is a node, has the CA sign and revoke.
	enforcers := FromRegistration | FromBundles | FromHeartbeat
	return map[string]Callers{
		ca + "Sign":   FromRegistration,
		ca + "Revoke": FromRegistration,
		// A node's certificates are revoked when registration revokes,
		// deletes or replaces it.
		ca + "RevokeNodeCertificates": FromRegistration,
		ca + "GetTrustBundle":         FromAnyone,
		ca + "GetRevocations":         enforcers | FromAdmin,
		ca + "ListIssued":             FromRegistration | FromAdmin,
		// The CRL is made to be handed out: signed and dated, serials and
		// times only; outside checkers, and nodes at boot, fetch it.
		ca + "GetCRL": FromAnyone,

		// A node proves its key; the handlers look the key up.
		reg + "Register": FromNode | FromBareKey,
		reg + "Resume":   FromNode | FromBareKey,
		reg + "Renew":    FromNode | FromBareKey,

		nodes + "ListNodes":        Viewers,
		nodes + "GetNode":          Viewers,
		nodes + "ApproveNode":      Operators,
		nodes + "RejectNode":       Operators,
		nodes + "RevokeNode":       Operators,
		nodes + "DeleteNode":       Operators,
		nodes + "AllowReplacement": Operators,
		nodes + "LabelNode":        Operators,
		// An enrolled EK is approved at registration: enrolling approves.
		nodes + "ImportEKs": Operators,
		// A PCR policy decides which boots get credentials, and an
		// enforced one can keep a whole fleet down: a security setting.
		nodes + "SetPCRPolicy":     FromAdmin,
		nodes + "ListPCRPolicies":  Viewers,
		nodes + "DeletePCRPolicy":  FromAdmin,
		nodes + "ListCertificates": Viewers,
		// Bootstrap tokens admit nodes, auto-approved ones too: like API
		// tokens, credentials that only an admin hands out.
		nodes + "CreateToken":     FromAdmin,
		nodes + "ListTokens":      Viewers,
		nodes + "RevokeToken":     FromAdmin,
		nodes + "WatchNodeEvents": Viewers,

		apiTokens + "CreateAPIToken": FromAdmin,
		apiTokens + "ListAPITokens":  FromAdmin,
		apiTokens + "RevokeAPIToken": FromAdmin,
		// The front door checks the tokens its callers present.
		apiTokens + "AuthenticateAPIToken": FromAPI,
		// The front door keeps the web console's sessions and sign-in
		// links here, for every front door; it names their principals.
		sessions + "CreateConsoleSession": FromAPI,
		sessions + "GetConsoleSession":    FromAPI,
		sessions + "UseSignInLink":        FromAPI,
		sessions + "EndConsoleSession":    FromAPI,

		// A node reads and writes its own bundle: the handlers take its ID
		// from its certificate.
		bundle + "GetBundle": FromNode,
		bundle + "PutBundle": FromNode,
		// Version numbers only: what a node needs to sign its own upload.
		bundle + "GetBundleVersions": FromNode,

		bundles + "PutBundle":         Operators,
		bundles + "GetBundleInfo":     Viewers,
		bundles + "ListBundleHistory": Viewers,
		bundles + "ApproveBundle":     Operators,
		bundles + "ResetBundle":       Operators,
		// The heartbeat service tells nodes of their new bundles; the
		// registration service drops the bundles it keeps for Resume.
		bundles + "WatchBundleEvents": Viewers | FromHeartbeat | FromRegistration,
		// Registration returns a node's sealed bundle inside Resume and
		// deletes a deleted node's bundles. A sealed bundle is opened only
		// by its node's key.
		bundles + "GetSealedBundle": Viewers | FromRegistration,
		// Registration fills its cache for Resume with every current
		// bundle when it starts: what GetSealedBundle gives, in bulk.
		bundles + "ListSealedBundles": Viewers | FromRegistration,
		bundles + "DeleteBundles":     Operators | FromRegistration,
		// The approval policy is a setting: admins change it.
		bundles + "GetBundleSettings": Viewers,
		bundles + "SetBundleSettings": FromAdmin,

		hb + "Heartbeat": FromNode,
		// A node's Resume counts as its first heartbeat: registration,
		// which checked the node, hands the boots over.
		"/berth.v1.HeartbeatBootService/RecordBoots": FromRegistration,

		hbAdmin + "GetNodeHealth":        Viewers,
		hbAdmin + "ListNodeHealth":       Viewers,
		hbAdmin + "WatchHealth":          Viewers,
		hbAdmin + "GetHeartbeatSettings": Viewers,
		hbAdmin + "SetHeartbeatSettings": FromAdmin,

		// The web console's one-time sign-in links sign in the admin who
		// asks; the front door serves it.
		"/berth.v1.ConsoleAdminService/CreateSignInLink": FromAdmin,

		// berth-agent's local API, on the node's unix socket only.
		agent + "UpdateReported": FromLocal,
		agent + "ReportEvent":    FromLocal,
		agent + "GetAgentStatus": FromLocal,

		// Every server: its build to anyone this deployment issued a
		// certificate to; health and reflection to every client, for
		// probes and grpcurl.
		berthv1.VersionService_GetVersion_FullMethodName: FromAuthenticated,
		health + "Check":                   FromAnyone,
		health + "Watch":                   FromAnyone,
		health + "List":                    FromAnyone,
		refl + "ServerReflectionInfo":      FromAnyone,
		reflAlpha + "ServerReflectionInfo": FromAnyone,
	}
}

// PolicyFor returns the rows of Matrix for the methods of the named gRPC
// services ("berth.v1.CertificateAuthorityService").
func PolicyFor(services ...string) Policy {
	p := Policy{}
	for method, callers := range Matrix() {
		for _, s := range services {
			if strings.HasPrefix(method, "/"+s+"/") {
				p[method] = callers.Rule()
			}
		}
	}
	return p
}
