#!/usr/bin/env bash
# provision.sh — make sure this machine has every tool the tests need, and
# apt-install what is missing. `make test` runs it first (make deps), so a
# fresh Debian machine with Go and a Docker engine passes `make test` with
# nothing installed by hand.
#
# Each requirement is one line in REQUIREMENTS below: a check that succeeds
# when the tool is there, and the Debian packages that provide it. To add a
# tool, add a line (and a have_* function when `command -v` is not enough).
# Installing needs root; without it, a missing tool fails with the command
# to run.
#
#   tools/provision.sh          check, install what is missing
#   tools/provision.sh --check  check only; exit 1 listing what is missing
set -Eeuo pipefail

# The PostgreSQL major version the tests and the Compose test's image use.
PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin

# check                     Debian packages (comma-separated)  what the tests use it for
REQUIREMENTS=(
	"have_pg_server          postgresql-$PG_MAJOR        PostgreSQL $PG_MAJOR server binaries (initdb, pg_ctl, postgres): throwaway test clusters and the Compose test's image"
	"have_pg_client          postgresql-client-$PG_MAJOR PostgreSQL $PG_MAJOR client (psql, pg_dump, pg_isready)"
	"have_compose            docker-compose              docker compose (plugin) or docker-compose: the Compose test"
	"have_cmd:docker         docker.io                   the docker command: the Compose test (the engine itself must be running)"
	"have_cmd:git            git                         git: make check-generate"
	"have_cc                 gcc,libc6-dev               a C compiler and libc headers: go test -race needs cgo"
	"have_cmd:swtpm          swtpm                       swtpm: the TPM tests' simulated TPM (internal/tpm/tpmtest)"
	"have_swtpm_tools        swtpm-tools                 swtpm_setup and swtpm_localca: the TPM tests' EK certificates"
	"have_cmd:systemd-analyze systemd                    systemd-analyze: the check of berth-agent's systemd unit (deploy/systemd)"
	"have_cmd:openssl        openssl                     openssl: the CRL tests check berth's revocation list with openssl crl and verify"
	"have_cmd:curl           curl                        curl: TestREADME runs the README's REST API examples"
	"have_cmd:python3        python3                     python3: the Python example client of the REST API (examples/python) runs in a test"
	"have_cmd:chromium       chromium                    chromium: the web console's browser tests (internal/console, chromedp, headless)"
)

log() { printf 'provision: %s\n' "$*" >&2; }

have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pg_server() { [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] && [ -x "$PG_BIN/postgres" ]; }
have_pg_client() { [ -x "$PG_BIN/psql" ] && [ -x "$PG_BIN/pg_dump" ] && [ -x "$PG_BIN/pg_isready" ]; }
# Without a C compiler go turns cgo off, and -race needs cgo.
have_cc() { have_cmd gcc && [ -e /usr/include/stdio.h ]; }
have_swtpm_tools() { have_cmd swtpm_setup && have_cmd swtpm_localca; }
have_compose() { docker compose version >/dev/null 2>&1 || have_cmd docker-compose; }
# initdb refuses to run as root, so the test harness runs the server
# binaries as this user.
have_pg_user() { id postgres >/dev/null 2>&1; }

check() { # check SPEC -> runs the check named in the first column
	local spec=$1
	case "$spec" in
	*:*) "${spec%%:*}" "${spec#*:}" ;;
	*) "$spec" ;;
	esac
}

missing() { # prints "packages|description" of every requirement not met
	local line spec pkgs desc
	for line in "${REQUIREMENTS[@]}"; do
		read -r spec pkgs desc <<<"$line"
		check "$spec" || printf '%s|%s\n' "${pkgs//,/ }" "$desc"
	done
}

check_only=0
[ "${1:-}" != --check ] || check_only=1

mapfile -t todo < <(missing)
pkgs=()
for t in "${todo[@]}"; do
	# shellcheck disable=SC2206 # one requirement may need several packages
	pkgs+=(${t%%|*})
	log "missing: ${t#*|}"
done

if [ ${#pkgs[@]} -gt 0 ]; then
	if [ "$check_only" = 1 ]; then
		log "install with: apt-get install ${pkgs[*]}"
		exit 1
	fi
	if [ "$(id -u)" != 0 ]; then
		log "error: installing ${pkgs[*]} needs root; run: sudo tools/provision.sh (or sudo apt-get install ${pkgs[*]})"
		exit 1
	fi
	log "apt-get install ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
	mapfile -t still < <(missing)
	if [ ${#still[@]} -gt 0 ]; then
		for t in "${still[@]}"; do log "error: still missing after apt-get install: ${t#*|}"; done
		exit 1
	fi
fi

# The postgres package creates this user; binaries installed another way
# may not have.
if ! have_pg_user; then
	if [ "$check_only" = 1 ] || [ "$(id -u)" != 0 ]; then
		log "error: no postgres system user (initdb refuses root, so the tests run the server as postgres);" \
			"run: sudo useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres"
		exit 1
	fi
	log "adding the postgres system user"
	useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres
fi

# promtool (tools/go.mod) checks a real scrape in the metrics test. It
# brings Prometheus's service discovery along, a long first build: make it
# here, once, so that go tool finds it cached and the test does not spend
# its time compiling.
if [ "$check_only" != 1 ]; then
	log "building promtool (go tool, cached after the first time)"
	(cd "$(dirname "$0")/.." && go tool -modfile=tools/go.mod promtool --version >/dev/null)
fi
