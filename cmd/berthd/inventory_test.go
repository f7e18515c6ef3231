package main

import (
	"io"
	"testing"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/testutil/clitest"
)

func testRoot() *cobra.Command {
	return newRoot(env{lookup: func(string) (string, bool) { return "", false }, stdout: io.Discard, stderr: io.Discard})
}

// TestInventory: every flag binds to its variable; the README's table,
// the README's examples and the Compose file match the code.
func TestInventory(t *testing.T) {
	clitest.CheckBindings(t, testRoot)
	clitest.CheckReadme(t, testRoot(), "../../README.md")
	clitest.CheckCompose(t, testRoot(), "../../deploy/compose.yaml")
}
