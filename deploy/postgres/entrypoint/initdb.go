package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// initCluster creates the cluster, the user's database, and runs the init
// scripts, on a temporary server that listens on the socket only, so that
// nobody connects over TCP (and a TCP healthcheck does not pass) before the
// database exists.
func initCluster(cfg config, getenv func(string) string) error {
	pgUser := orDefault(getenv("POSTGRES_USER"), "postgres")
	db := orDefault(getenv("POSTGRES_DB"), pgUser)
	auth := orDefault(getenv("POSTGRES_HOST_AUTH_METHOD"), "scram-sha-256")
	password := getenv("POSTGRES_PASSWORD")
	if password == "" && auth != "trust" {
		return errors.New("the database is uninitialized and POSTGRES_PASSWORD is not set " +
			"(set it, or POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without one)")
	}
	logf("initializing a new cluster in %s for user %s", cfg.dataDir, pgUser)

	initdb := []string{"--username=" + pgUser, "--auth-local=trust", "--auth-host=" + auth,
		"--encoding=UTF8", "--locale=C.UTF-8"}
	if password != "" {
		pw, err := os.CreateTemp("", "pwfile")
		if err != nil {
			return err
		}
		defer os.Remove(pw.Name())
		_, err = pw.WriteString(password + "\n")
		if cerr := pw.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		initdb = append(initdb, "--pwfile="+pw.Name())
	}
	initdb = append(initdb, strings.Fields(getenv("POSTGRES_INITDB_ARGS"))...)
	initdb = append(initdb, "-D", cfg.dataDir)
	if err := command(nil, "initdb", initdb...); err != nil {
		return err
	}
	if err := appendFile(filepath.Join(cfg.dataDir, "pg_hba.conf"),
		"\n# compose network: every host, password required\nhost all all all "+auth+"\n"); err != nil {
		return err
	}
	if err := appendFile(filepath.Join(cfg.dataDir, "postgresql.conf"), "\nlisten_addresses = '*'\n"); err != nil {
		return err
	}

	if err := command(nil, "pg_ctl", "-D", cfg.dataDir, "-w", "-s", "start",
		"-o", "-c listen_addresses='' -p 5432 -k "+cfg.socketDir); err != nil {
		return err
	}
	err := setup(cfg, pgUser, db)
	if stopErr := command(nil, "pg_ctl", "-D", cfg.dataDir, "-m", "fast", "-w", "-s", "stop"); err == nil {
		err = stopErr
	}
	if err != nil {
		return err
	}
	logf("cluster ready")
	return nil
}

// setup runs on the temporary server: the database, then the init scripts
// in name order.
func setup(cfg config, pgUser, db string) error {
	psql := func(dbname string, args ...string) []string {
		return append([]string{"-v", "ON_ERROR_STOP=1", "--no-psqlrc", "-q", "-h", cfg.socketDir, "-p", "5432",
			"--username", pgUser, "--dbname", dbname}, args...)
	}
	if db != "postgres" {
		// psql quotes the name (:"db"), whatever it holds.
		if err := command(strings.NewReader(`CREATE DATABASE :"db";`), "psql", psql("postgres", "--set", "db="+db)...); err != nil {
			return err
		}
	}
	scripts, err := filepath.Glob(filepath.Join(cfg.initDir, "*"))
	if err != nil {
		return err
	}
	sort.Strings(scripts)
	for _, f := range scripts {
		switch {
		case strings.HasSuffix(f, ".sh"):
			logf("running %s", f)
			err = command(nil, "/bin/sh", f)
		case strings.HasSuffix(f, ".sql"):
			logf("running %s", f)
			err = command(nil, "psql", psql(db, "-f", f)...)
		default:
			logf("ignoring %s", f)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// command runs a program with stdin, its stdout discarded (initdb and
// pg_ctl are chatty) and its stderr passed through.
func command(stdin *strings.Reader, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
