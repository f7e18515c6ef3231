package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"time"
)

// commandRun is the outcome of a command the agent ran for the host: the
// --on-renew command or a bundle's post-apply hook.
type commandRun struct {
	// ExitCode is the command's exit status; -1 when it did not exit by
	// itself (killed after its timeout, or never started).
	ExitCode int
	// TimedOut is true when the command was killed after its timeout.
	TimedOut bool
	// Err says why the command failed; nil when it exited 0.
	Err  error
	Took time.Duration
}

// runCommand runs argv with env added to the agent's environment (less
// the bootstrap token), its output going to the log under name, killed
// with everything it started after timeout. It returns when the command
// is done; ctx ending kills it too.
func runCommand(ctx context.Context, name string, argv, env []string, timeout time.Duration, log *slog.Logger) commandRun {
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	cmd.Env = append(commandEnv(), env...)
	cmd.Dir = "/"
	stdout := &logWriter{log: log, msg: name, stream: "stdout"}
	stderr := &logWriter{log: log, msg: name, stream: "stderr"}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = configureWaitDelay
	killGroup(cmd)
	err := cmd.Run()
	stdout.flush()
	stderr.flush()
	r := commandRun{ExitCode: -1, Took: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case err == nil:
		r.ExitCode = 0
	case ctx.Err() == nil && cctx.Err() != nil:
		r.TimedOut = true
		r.Err = fmt.Errorf("%s did not finish within %s and was killed", name, timeout)
	case errors.As(err, &exit) && exit.Exited():
		r.ExitCode = exit.ExitCode()
		r.Err = fmt.Errorf("%s failed with exit status %d", name, r.ExitCode)
	default:
		r.Err = fmt.Errorf("%s failed: %w", name, err)
	}
	return r
}
