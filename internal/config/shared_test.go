package config_test

import (
	"slices"
	"sort"
	"testing"

	"github.com/berth-dev/berth/internal/testutil/clitest"
)

// shared are the variables that more than one binary reads, each with the
// one meaning it has for all of them. A variable that two binaries read
// with different meanings breaks one of them whenever both run in one
// environment, as BERTH_OUTPUT (berthctl's table|json, the agent's
// text|json) once did. Each binary's inventory test checks that the
// README's table is its code; this checks the table across binaries.
var shared = map[string]string{
	"BERTH_SERVER":           "address of the registration service",
	"BERTH_BUNDLES_SERVER":   "address of the bundles admin API",
	"BERTH_HEARTBEAT_SERVER": "address of the heartbeat admin API",
	"BERTH_CA_SERVER":        "address of the CA service (issued log, revocation list)",
	"BERTH_CA":               "PEM roots that verify the servers, for the admin client",
	"BERTH_CERT":             "admin client certificate",
	"BERTH_KEY":              "admin client key",
	"BERTH_CA_HASH":          "pin of berth's root CA that nodes use",
	"BERTH_OUTPUT":           "admin tools' output format, table or json",
	"BERTH_LOG_LEVEL":        "level of the logs on stderr",
	"BERTH_WAIT":             "how long a node agent waits for the services",
	"BERTH_DB":               "PostgreSQL URL of berth's store",
	"BERTH_TIMEOUT":          "deadline of one command run (berthctl, berthd health)",
}

func TestSharedVariablesMeanOneThing(t *testing.T) {
	readers := map[string][]string{}
	for _, b := range clitest.ReadmeBindings(t, "../../README.md") {
		if !slices.Contains(readers[b.Env], b.Binary) {
			readers[b.Env] = append(readers[b.Env], b.Binary)
		}
	}
	for env, bins := range readers {
		sort.Strings(bins)
		if _, ok := shared[env]; len(bins) > 1 && !ok {
			t.Errorf("%s is read by %v: give each its own variable, or add it to shared with the one meaning it has for all", env, bins)
		}
	}
	for env := range shared {
		if len(readers[env]) < 2 {
			t.Errorf("%s is in shared but read by %v only", env, readers[env])
		}
	}
	// The collision this guards against.
	if slices.Contains(readers["BERTH_OUTPUT"], "berth-agent") {
		t.Error("berth-agent reads BERTH_OUTPUT, berthctl's table|json")
	}
}
