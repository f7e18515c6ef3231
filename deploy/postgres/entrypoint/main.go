// Command docker-entrypoint is the entrypoint of berth's locally built
// PostgreSQL image (deploy/postgres/build-image.sh). It follows the official
// postgres image's contract, so compose.yaml configures both the same way:
//
//	POSTGRES_USER (default postgres), POSTGRES_PASSWORD (required unless
//	POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_DB (default $POSTGRES_USER),
//	POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default scram-sha-256),
//	PGDATA (default /var/lib/postgresql/data), /docker-entrypoint-initdb.d/
//	(*.sql run with psql, *.sh with /bin/sh, once, on the first start),
//	port 5432, "postgres" as the command.
//
// On the first start it creates the cluster in $PGDATA (a volume); later
// starts find PG_VERSION there and just run the server, as the postgres
// user. It is a static Go binary because the image is FROM scratch: it has
// the server binaries and /bin/sh (which initdb and pg_ctl call), but no
// coreutils, setpriv or bash for a shell entrypoint.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// config is where things are; main fills it with the image's layout.
type config struct {
	dataDir   string // $PGDATA
	socketDir string // unix_socket_directories of the temporary server
	initDir   string // scripts run once after initdb
	user      string // system user that owns the data and runs the server
}

func main() {
	cfg := config{
		dataDir:   os.Getenv("PGDATA"),
		socketDir: "/var/run/postgresql",
		initDir:   "/docker-entrypoint-initdb.d",
		user:      "postgres",
	}
	if cfg.dataDir == "" {
		cfg.dataDir = "/var/lib/postgresql/data"
	}
	if err := run(cfg, os.Args[1:]); err != nil {
		logf("error: %v", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s [entrypoint] %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

// run prepares the cluster and then replaces this process with the
// command, so that postgres is PID 1 and gets docker stop's signal.
func run(cfg config, args []string) error {
	os.Setenv("PGDATA", cfg.dataDir)
	// "docker run IMAGE -c shared_buffers=1GB" means postgres with those options.
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		args = append([]string{"postgres"}, args...)
	}
	if args[0] == "postgres" {
		if err := prepare(cfg); err != nil {
			return err
		}
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		return err
	}
	return syscall.Exec(path, args, os.Environ())
}

// prepare, as root, hands the data and socket directories to the postgres
// user and becomes that user; then it initialises an empty data directory.
func prepare(cfg config) error {
	if os.Getuid() == 0 {
		if err := becomeOwner(cfg); err != nil {
			return err
		}
	}
	if b, err := os.ReadFile(cfg.dataDir + "/PG_VERSION"); err == nil && len(b) > 0 {
		return nil
	}
	return initCluster(cfg, os.Getenv)
}
