//go:build !unix

package agent

import "os/exec"

// killGroup leaves cmd as it is: without process groups, cancelling it
// kills the command only.
func killGroup(*exec.Cmd) {}
