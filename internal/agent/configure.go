package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/bundle"
)

// Environment of the --configure command.
const (
	EnvStagingDir = "BERTH_STAGING_DIR"
	EnvNodeID     = "BERTH_NODE_ID"
	EnvHostname   = "BERTH_HOSTNAME"
)

// configureWaitDelay bounds how long the agent waits for the command's
// output once the command itself has exited or been killed, in case
// something it started still holds its stdout or stderr.
const configureWaitDelay = 5 * time.Second

// bundleModes are the mode bits a bundle file carries.
const bundleModes = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// configureError is a --configure command that failed.
type configureError struct {
	msg string
	err error
}

func (e *configureError) Error() string { return e.msg }
func (e *configureError) Unwrap() error { return e.err }

// runConfigure runs the --configure command, which writes the node's
// files into a fresh staging directory, and returns those files. The
// command runs through /bin/sh -c with the staging directory as $1 and in
// BERTH_STAGING_DIR, the node ID in BERTH_NODE_ID and its host name in
// BERTH_HOSTNAME, in the staging directory. Its output goes to the log, never to stdout, which holds
// the agent's result. It is killed, with everything it started in its
// process group, after timeout.
func runConfigure(ctx context.Context, command string, timeout time.Duration, nodeID, hostname string, log *slog.Logger) ([]bundle.File, error) {
	staging, err := os.MkdirTemp("", "berth-configure-*") // mode 0700
	if err != nil {
		return nil, fmt.Errorf("create staging directory for --configure: %w", err)
	}
	defer os.RemoveAll(staging)

	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, "/bin/sh", "-c", command, "berth-configure", staging)
	cmd.Env = append(commandEnv(),
		EnvStagingDir+"="+staging,
		EnvNodeID+"="+nodeID,
		EnvHostname+"="+hostname,
	)
	cmd.Dir = staging
	stdout := &logWriter{log: log, msg: "configure", stream: "stdout"}
	stderr := &logWriter{log: log, msg: "configure", stream: "stderr"}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = configureWaitDelay
	killGroup(cmd)

	log.Info("running the configure command", "staging_dir", staging)
	err = cmd.Run()
	stdout.flush()
	stderr.flush()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case cctx.Err() != nil:
		return nil, &configureError{msg: fmt.Sprintf("configure command did not finish within %s; nothing was uploaded", timeout), err: cctx.Err()}
	case errors.As(err, &exit) && exit.Exited():
		return nil, &configureError{msg: fmt.Sprintf("configure command failed with exit status %d; nothing was uploaded", exit.ExitCode()), err: err}
	default:
		return nil, &configureError{msg: fmt.Sprintf("configure command failed: %v; nothing was uploaded", err), err: err}
	}
	files, err := readStaging(staging)
	if err != nil {
		return nil, fmt.Errorf("configure command output: %w; nothing was uploaded", err)
	}
	return files, nil
}

// commandEnv is the agent's environment without the bootstrap token,
// which the command has no use for.
func commandEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "BERTH_TOKEN=")
	})
}

// readStaging collects the regular files under dir, with their modes and
// paths relative to dir. Directories only hold files; anything else (a
// symlink, a device, a pipe) is refused.
func readStaging(dir string) ([]bundle.File, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var (
		files []bundle.File
		total int64
	)
	err = fs.WalkDir(r.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch t := d.Type(); {
		case t.IsDir():
			return nil
		case !t.IsRegular():
			return fmt.Errorf("%s is a %s; only regular files can go into a bundle", name, typeName(t))
		}
		// Opened, not read by name: Root refuses a file swapped for a
		// symlink out of the staging directory since the walk saw it.
		f, err := r.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is a %s; only regular files can go into a bundle", name, typeName(fi.Mode()))
		}
		if total += fi.Size(); total > bundle.MaxPayload {
			return fmt.Errorf("the files add up to more than the %d bytes a bundle holds", bundle.MaxPayload)
		}
		var b bytes.Buffer
		if _, err := b.ReadFrom(f); err != nil {
			return err
		}
		files = append(files, bundle.File{Path: filepath.ToSlash(name), Mode: fi.Mode() & bundleModes, Content: b.Bytes()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return files, nil
}

// logWriter logs what a command writes, one record per line.
type logWriter struct {
	log    *slog.Logger
	msg    string // the log message of each line: what ran
	stream string
	mu     sync.Mutex
	buf    []byte
}

// maxLogLine cuts lines that never end, so output cannot grow the buffer
// without bound.
const maxLogLine = 4096

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) >= maxLogLine {
				w.emit(w.buf)
				w.buf = w.buf[:0]
			}
			return len(p), nil
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
}

// flush logs a last line without a newline.
func (w *logWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}

func (w *logWriter) emit(line []byte) {
	w.log.Info(w.msg, "stream", w.stream, "line", string(bytes.TrimRight(line, "\r")))
}
