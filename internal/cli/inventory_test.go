package cli

import (
	"testing"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/testutil/clitest"
)

func testRoot() *cobra.Command { return Config{}.newRoot() }

// TestInventory: the global flags bind to their variables, the commands'
// own flags to none; the README's table and examples and the Compose file
// match the code.
func TestInventory(t *testing.T) {
	clitest.CheckBindings(t, testRoot)
	for _, b := range clitest.Bindings(testRoot()) {
		if b.Command != "" {
			t.Errorf("%v: a command's own flag is set by a variable", b)
		}
	}
	if n := len(clitest.Bindings(testRoot())); n != len(globalSpecs()) {
		t.Errorf("%d flags have variables, want the %d global ones", n, len(globalSpecs()))
	}
	clitest.CheckReadme(t, testRoot(), "../../README.md")
	clitest.CheckCompose(t, testRoot(), "../../deploy/compose.yaml")
}
