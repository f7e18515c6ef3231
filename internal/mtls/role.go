package mtls

// Role is what an administrator may do through the admin API. Each role
// includes the ones below it: an operator may do what a viewer may, an
// admin what an operator may. The admin client certificate is RoleAdmin;
// an API token carries the role it was created with.
type Role int

// The roles, weakest first.
const (
	RoleNone Role = iota
	// RoleViewer reads: nodes, health, bundles' metadata, events.
	RoleViewer
	// RoleOperator also approves, rejects, revokes and deletes nodes and
	// manages bundles and labels.
	RoleOperator
	// RoleAdmin also manages bootstrap and API tokens and settings.
	RoleAdmin
)

// Roles lists the roles a token may have, weakest first.
func Roles() []Role { return []Role{RoleViewer, RoleOperator, RoleAdmin} }

func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleOperator:
		return "operator"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// ParseRole reads "viewer", "operator" or "admin".
func ParseRole(s string) (Role, bool) {
	for _, r := range Roles() {
		if r.String() == s {
			return r, true
		}
	}
	return RoleNone, false
}

// RoleOf is the admin API role of a caller: RoleAdmin for an admin
// certificate, the token's role for an API token, RoleNone for anyone
// else (nodes and services have no admin role).
func RoleOf(id Identity) Role {
	switch id.Kind {
	case KindAdmin:
		return RoleAdmin
	case KindToken:
		return id.Role
	}
	return RoleNone
}
