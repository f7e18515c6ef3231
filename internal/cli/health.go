package cli

import berthv1 "github.com/berth-dev/berth/proto/berth/v1"

// healthUnknown is the health of a node whose liveness berthctl cannot see.
const healthUnknown = "unknown"

// nodeHealth is the one place where node health enters berthctl's output
// (the "health" JSON field and the HEALTH column). Until the heartbeat
// service's admin API exists every node reports healthUnknown; then this
// becomes a lookup into health fetched once per command, in one batched call.
func nodeHealth(*berthv1.Node) string {
	return healthUnknown
}
