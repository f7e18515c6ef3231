package main

import (
	"io"
	"testing"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/testutil/clitest"
)

func testRoot() *cobra.Command {
	return newRoot(&options{}, func(string) (string, bool) { return "", false }, io.Discard)
}

// TestInventory: every flag binds to its variable; the README's table and
// examples, the Compose file and the systemd unit match the code.
func TestInventory(t *testing.T) {
	clitest.CheckBindings(t, testRoot)
	clitest.CheckReadme(t, testRoot(), "../../README.md")
	clitest.CheckCompose(t, testRoot(), "../../deploy/compose.yaml")
	clitest.CheckSystemd(t, testRoot(), "../../deploy/systemd/berth-agent.service")
}
