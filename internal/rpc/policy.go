// Package rpc builds berth's gRPC servers and clients: mutual TLS, the
// interceptor chain (recovery, logging, authorisation), health, reflection
// and OpenTelemetry instrumentation, the same for every service.
package rpc

import (
	"slices"

	"github.com/berth-dev/berth/internal/mtls"
)

// Rule decides whether a verified caller may call a method.
type Rule func(mtls.Identity) bool

// Policy maps full gRPC method names ("/berth.v1.X/Y") to rules. A method
// missing from the policy is denied to everyone.
type Policy map[string]Rule

// Merge returns the union of policies, for one process serving several services.
func Merge(ps ...Policy) Policy {
	out := Policy{}
	for _, p := range ps {
		for m, r := range p {
			out[m] = r
		}
	}
	return out
}

// Admin allows admin identities.
func Admin(id mtls.Identity) bool { return id.Kind == mtls.KindAdmin }

// NodeKey allows anyone proving possession of a key: a node with or without
// an issued certificate. Handlers then look the key up.
func NodeKey(id mtls.Identity) bool {
	return id.Kind == mtls.KindBootstrap || id.Kind == mtls.KindNode
}

// Node allows nodes holding a certificate issued by berth.
func Node(id mtls.Identity) bool { return id.Kind == mtls.KindNode }

// Anyone allows every caller with a client certificate, verified or not.
func Anyone(mtls.Identity) bool { return true }

// Service allows the named services.
func Service(names ...string) Rule {
	return func(id mtls.Identity) bool {
		return id.Kind == mtls.KindService && slices.Contains(names, id.Name)
	}
}

// AnyOf allows a caller that any of the rules allows.
func AnyOf(rules ...Rule) Rule {
	return func(id mtls.Identity) bool {
		for _, r := range rules {
			if r(id) {
				return true
			}
		}
		return false
	}
}

// allowsBootstrap reports whether a rule lets a bare key through, which
// decides between Unauthenticated and PermissionDenied for unverified peers.
func allowsBootstrap(r Rule) bool {
	return r(mtls.Identity{Kind: mtls.KindBootstrap})
}

// Authenticated allows every caller whose certificate this deployment's CA
// issued: admins, nodes and services, but not a bare key.
func Authenticated(id mtls.Identity) bool {
	switch id.Kind {
	case mtls.KindAdmin, mtls.KindNode, mtls.KindService:
		return true
	}
	return false
}
