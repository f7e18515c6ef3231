#!/usr/bin/env bash
# make bench: the power-restore load harness, end to end on this machine.
#
# Builds berthd and berth-loadgen, starts a throwaway PostgreSQL and the four
# services as separate processes on it (berthd serve --role ca, bundles,
# heartbeat, registration), then runs
#
#   berth-loadgen ceiling     full mTLS handshakes/s between two bare processes
#   berth-loadgen grpc-floor  a fresh mTLS connection and one empty gRPC call
#                             (health Check) each, BENCH_CONCURRENCY in flight,
#                             against a bare server process built with berthd's
#                             own server options: the most a Resume can reach
#   berth-loadgen boot-floor  the same with a node's least boot in place of the
#                             empty call (a fresh self-signed certificate,
#                             Resume answered from memory with the node's
#                             chain and sealed bundle, and the checks no node
#                             may skip): the most a storm's boot can reach
#   berth-loadgen register-floor
#                             the same with a node's least first registration
#                             (a fresh self-signed certificate and CSR,
#                             Register answered by signing the CSR from memory
#                             with the CA's key, the key checked): the most a
#                             first registration can reach, against step-ca
#   berth-loadgen register    BENCH_NODES fresh nodes boot at once
#   register-dev              the same against berthd dev (one process, SQLite
#                             with full sync), started for it alone and stopped
#                             after it: the first registration in both setups
#   stepca-sign               the yardstick of the first registration: step-ca
#                             v0.30.2 (pinned in bench/stepca/go.mod, built
#                             from the module proxy with -tags=noyubikey),
#                             started for it alone on its own root,
#                             intermediate and JWK provisioner (berth-loadgen
#                             stepca-init) with its badger database in the
#                             work directory and no access log; berth-loadgen
#                             stepca-sign then has BENCH_NODES fresh keys ask
#                             for a certificate at once (POST /1.0/sign, a
#                             fresh one-time token and TLS connection each,
#                             BENCH_CONCURRENCY in flight): signs/s against
#                             the ceiling, step-ca's CPU per sign, and each
#                             first registration against that rate
#   berth-loadgen storm       the same nodes boot again at once (power restore)
#   restore                   the registration service restarts, then the
#                             storm's nodes boot again at once, as in a real
#                             power restore (storm --no-prepare, reported as
#                             storm_restarted)
#   berth-loadgen heartbeat   BENCH_HB_NODES nodes beat every BENCH_HB_INTERVAL
#   berth-loadgen stream-floor
#                             BENCH_HB_NODES connections, one stream each, to
#                             such a server echoing a heartbeat's message every
#                             BENCH_HB_INTERVAL: the least a beat costs in CPU
#                             and a connected node in memory
#
# prints one table with the storm's boots/s as a share of the ceiling and the
# targets, then the figures of the one-handshake issue against the ceiling
# (throughputs as a share of it, server CPU per boot and per beat in
# handshakes' worth, the throwaway PostgreSQL's CPU per boot apart from it
# (the servers' figures leave it out; step-ca's include its embedded
# database), handshakes per boot, the 10,000-boot storm, first
# registrations against step-ca's measured /sign rate, heartbeat
# memory per node and the projection to 100,000 nodes) and, next to Resume's
# and the heartbeat's figures, their floors and whether each goal is within
# them, writes every result to BENCH_OUT (a JSON array) and stops
# everything it started, whatever happens.
#
# Settings (environment):
#   BENCH_NODES             nodes of register and storm (2000)
#   BENCH_HB_NODES          nodes of heartbeat (BENCH_NODES)
#   BENCH_HB_INTERVAL       heartbeat interval set for the run (5s)
#   BENCH_HB_DURATION       how long the connected nodes beat (30s)
#   BENCH_HB_REPLICAS       heartbeat replicas (1). With N > 1, N heartbeat
#                           services run on the same PostgreSQL, each named
#                           (--advertise-heartbeat) by a registration service
#                           of its own, and the heartbeat scenario runs as N
#                           berth-loadgen processes in parallel, each with
#                           BENCH_HB_NODES/N nodes of its own seed against its
#                           own registration service, their windows lined up;
#                           berth-loadgen combine adds them up as one result
#                           (counts, beats/s and health events summed, latency
#                           percentiles the largest of the processes'). One
#                           process cannot hold 20,000 streams under a
#                           descriptor limit of 20,000; N can.
#   BENCH_HB_LOADGENS       berth-loadgen heartbeat processes (BENCH_HB_REPLICAS).
#                           More processes than replicas share them in turn
#                           (process i beats against replica i mod N), so
#                           that one heartbeat instance can hold more nodes
#                           than one load generator process can drive:
#                           BENCH_HB_NODES=18000 BENCH_HB_LOADGENS=4 holds
#                           18,000 nodes on one instance; the result is
#                           combined as with BENCH_HB_REPLICAS.
#   BENCH_CEILING_DURATION  how long the ceiling is measured (10s)
#   BENCH_PROBE_DURATION    how long the ceiling measured again just before
#                           each floor, register, register-dev, stepca-sign,
#                           storm and restore is measured (3s; 0 or 0s for
#                           none; the storm's by berth-loadgen storm --probe,
#                           after its setup, right before its boots):
#                           this machine's speed drifts by up to a third
#                           within minutes, so the report also gives each
#                           of them as a share of its own probe, and makes
#                           the issue's comparisons (Resume against the boot
#                           floor, first registration against step-ca's
#                           /sign) through those shares
#   BENCH_CONCURRENCY       boots in flight at most (256)
#   BENCH_SCENARIOS         which to run ("ceiling grpc-floor boot-floor register-floor
#                           register register-dev stepca-sign storm restore
#                           heartbeat stream-floor";
#                           restore needs storm before it)
#   BENCH_OUT               results file (bench-results.json)
#   BENCH_DB                an existing PostgreSQL URL instead of a throwaway one
#   BENCH_PG_OPTS           server settings of the throwaway cluster
#                           ("-c fsync=off -c synchronous_commit=off")
#   BENCH_PPROF             a directory: the heartbeat service serves Go's
#                           profiles (--pprof-listen) and the heartbeat
#                           scenario writes there its CPU profile over the
#                           window (up to 25 s) and its heap and goroutine
#                           profiles at the window's end (go tool pprof); the
#                           floors write their servers' CPU profiles there
#                           too (else in the work directory), whose split the
#                           report gives either way; and
#                           the register scenarios write there the CPU
#                           profiles of the registration service and the CA
#                           (register-registration-cpu.pprof,
#                           register-ca-cpu.pprof) and of berthd dev
#                           (register-dev-dev-cpu.pprof), over their first
#                           BENCH_PROFILE_SECONDS; restore those of the
#                           registration and heartbeat services
#                           (restore-NAME-cpu.pprof) the same way; and
#                           register, storm and restore the load generator's
#                           own over their timed boots (register- and
#                           storm-loadgen-cpu.pprof, restore/storm-...)
#   BENCH_PROFILE_SECONDS   length of those profiles (5)
#   BENCH_HB_GODEBUG        GODEBUG of the heartbeat service, to compare runtime
#                           settings (e.g. adaptivestackstart=0)
#   BENCH_KEEP=1            keep the work directory (logs, PKI) afterwards
#   BENCH_PRELOAD           synthetic registered nodes inserted before the
#                           scenarios (0), so that the storm runs against a
#                           large registry: compare p50/p99 with and without
#   GO                      the go command (go)
#
# The Go benchmarks of the store and of Resume stay available with
#   go test -run '^$' -bench . -benchtime 2s ./internal/store/regstore/ ./services/registration/
set -euo pipefail

cd "$(dirname "$0")/.."

GO=${GO:-go}
BENCH_NODES=${BENCH_NODES:-2000}
BENCH_HB_NODES=${BENCH_HB_NODES:-$BENCH_NODES}
BENCH_HB_INTERVAL=${BENCH_HB_INTERVAL:-5s}
BENCH_HB_DURATION=${BENCH_HB_DURATION:-30s}
BENCH_CEILING_DURATION=${BENCH_CEILING_DURATION:-10s}
BENCH_PROBE_DURATION=${BENCH_PROBE_DURATION:-3s}
BENCH_CONCURRENCY=${BENCH_CONCURRENCY:-256}
# Every scenario, in the order a run without BENCH_SCENARIOS takes them.
all_scenarios="ceiling grpc-floor boot-floor register-floor register register-dev stepca-sign storm restore heartbeat stream-floor"
BENCH_SCENARIOS=${BENCH_SCENARIOS:-$all_scenarios}
BENCH_OUT=${BENCH_OUT:-bench-results.json}
BENCH_PG_OPTS=${BENCH_PG_OPTS:--c fsync=off -c synchronous_commit=off}
BENCH_DB=${BENCH_DB:-}
BENCH_KEEP=${BENCH_KEEP:-}
BENCH_PRELOAD=${BENCH_PRELOAD:-0}
BENCH_HB_REPLICAS=${BENCH_HB_REPLICAS:-1}
BENCH_HB_LOADGENS=${BENCH_HB_LOADGENS:-$BENCH_HB_REPLICAS}
BENCH_PPROF=${BENCH_PPROF:-}
BENCH_PROFILE_SECONDS=${BENCH_PROFILE_SECONDS:-5}
BENCH_HB_GODEBUG=${BENCH_HB_GODEBUG:-}
[ "$BENCH_HB_REPLICAS" -ge 1 ] 2>/dev/null || { echo "bench: BENCH_HB_REPLICAS must be at least 1" >&2; exit 1; }
[ "$BENCH_HB_LOADGENS" -ge 1 ] 2>/dev/null || { echo "bench: BENCH_HB_LOADGENS must be at least 1" >&2; exit 1; }
# Refused before anything is built or started: a name no scenario has, and
# restore without the storm before it, whose nodes it boots (without it
# every boot failed, and the run reported a zero rate).
storm_first=
for s in $BENCH_SCENARIOS; do
	case " $all_scenarios " in
	*" $s "*) ;;
	*) echo "bench: unknown scenario $s in BENCH_SCENARIOS (scenarios: $all_scenarios)" >&2; exit 1 ;;
	esac
	case "$s" in
	storm) storm_first=1 ;;
	restore) [ -n "$storm_first" ] || { echo "bench: restore boots the nodes the storm scenario sets up: list storm before restore in BENCH_SCENARIOS" >&2; exit 1; } ;;
	esac
done

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# berthd reads every BERTH_<FLAG> variable; a berthctl environment in the
# caller's shell must not reach the servers.
for v in $(compgen -e | grep '^BERTH_' || true); do unset "$v"; done

# 10,000 connections at once need descriptors, in the servers as well.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
say "file descriptor limit $(ulimit -n)"

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench.XXXXXX")
chmod 755 "$work"
mkdir -p "$work/bin" "$work/logs"
pids=()
declare -A role_pid
pg_ctl_cmd=()
failed=0

# shellcheck disable=SC2317 # run by the trap
cleanup() {
	local status=$?
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [ ${#pg_ctl_cmd[@]} -gt 0 ]; then
		"${pg_ctl_cmd[@]}" -m fast -w stop >/dev/null 2>&1 || true
	fi
	if [ -n "$BENCH_KEEP" ] || [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then
		say "work directory kept: $work (server logs in $work/logs)"
	else
		rm -rf "$work"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

used_ports=" "
free_port() {
	local p
	for _ in $(seq 500); do
		# Below the kernel's ephemeral range (32768 and up by default),
		# where a client connection's local port (the load generator's,
		# PostgreSQL's clients') would make the bind fail although nothing
		# listens there.
		p=$((20000 + RANDOM % 12000))
		case "$used_ports" in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			used_ports="$used_ports$p "
			echo "$p"
			return 0
		fi
	done
	return 1
}

say "building berthd and berth-loadgen"
CGO_ENABLED=0 "$GO" build -trimpath -o "$work/bin/" ./cmd/berthd ./cmd/berth-loadgen
berthd="$work/bin/berthd"
loadgen="$work/bin/berth-loadgen"
stepca="$work/bin/step-ca"
case " $BENCH_SCENARIOS " in *" stepca-sign "*)
	# Its own module: step-ca's dependencies never touch berth's go.mod.
	say "building step-ca (bench/stepca/go.mod)"
	(cd bench/stepca && CGO_ENABLED=0 "$GO" build -trimpath -tags=noyubikey -o "$stepca" github.com/smallstep/certificates/cmd/step-ca)
	;;
esac

# ---- PostgreSQL ----
if [ -z "$BENCH_DB" ]; then
	pgbin=${BENCH_PG_BIN:-}
	if [ -z "$pgbin" ]; then
		if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then
			pgbin=$(pg_config --bindir)
		else
			for d in /usr/lib/postgresql/*/bin; do
				[ -x "$d/initdb" ] && pgbin=$d
			done
		fi
	fi
	if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
		die "no PostgreSQL server binaries (initdb); install postgresql or set BENCH_DB"
	fi
	as_pg() { "$@"; }
	mkdir -p "$work/pg"
	if [ "$(id -u)" -eq 0 ]; then
		# initdb refuses to run as root.
		chown postgres: "$work/pg"
		as_pg() { (cd / && runuser -u postgres -- "$@"); }
	fi
	pgport=$(free_port)
	say "starting a throwaway PostgreSQL on 127.0.0.1:$pgport ($BENCH_PG_OPTS)"
	as_pg "$pgbin/initdb" -D "$work/pg/data" -A trust -U postgres --no-sync -E UTF8 >"$work/logs/initdb.log" 2>&1 ||
		die "initdb failed: $(tail -n 5 "$work/logs/initdb.log")"
	pg_ctl_cmd=(as_pg "$pgbin/pg_ctl" -D "$work/pg/data")
	"${pg_ctl_cmd[@]}" -l "$work/pg/postgres.log" \
		-o "-p $pgport -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=200 $BENCH_PG_OPTS" -w start >/dev/null ||
		die "PostgreSQL did not start: $(tail -n 5 "$work/pg/postgres.log")"
	BENCH_DB="postgres://postgres@127.0.0.1:$pgport/postgres?sslmode=disable"
	# The postmaster: berth-loadgen reports its CPU and its connections'
	# (db_cpu_ms), which the servers' CPU figures leave out.
	db_pid=$(head -n 1 "$work/pg/data/postmaster.pid")
fi

# ---- berth: PKI and the four services, each its own process ----
"$berthd" init --dir "$work/pki" >"$work/logs/init.log"
ca_port=$(free_port)
bundles_port=$(free_port)
heartbeat_port=$(free_port)
registration_port=$(free_port)

# serve NAME ROLE PORT ARGS: NAME is the role, or the role and a replica
# number (heartbeat2), and names the log and the PID. Every simulated node
# connects from 127.0.0.1, so the per-source limit on unauthenticated
# connections, made for real networks, is off: it would count the register
# scenario's fresh nodes (up to BENCH_CONCURRENCY at once) as one source.
serve() {
	local name=$1 role=$2 port=$3
	shift 3
	"$berthd" serve --role "$role" --pki-dir "$work/pki" --db "$BENCH_DB" \
		--listen "127.0.0.1:$port" --metrics-listen "" --max-unauthenticated-per-source 0 --log-level warn "$@" \
		>"$work/logs/$name.log" 2>&1 &
	pids+=("$!")
	role_pid[$name]=$!
	for _ in $(seq 150); do
		if "$berthd" health --addr "127.0.0.1:$port" --pki-dir "$work/pki" --as "$role" >/dev/null 2>&1; then
			say "berthd serve --role $role: 127.0.0.1:$port (pid $!, $name)"
			return 0
		fi
		kill -0 "$!" 2>/dev/null || die "berthd serve --role $role exited: $(tail -n 5 "$work/logs/$name.log")"
		sleep 0.2
	done
	die "berthd serve --role $role is not healthy after 30 s: $(tail -n 5 "$work/logs/$name.log")"
}
# With BENCH_PPROF, the CA, the heartbeat and the registration service
# (and berthd dev) serve Go's profiles on pprof_port[NAME]; pprof_args NAME
# is the flag that says so, or nothing.
declare -A pprof_port
if [ -n "$BENCH_PPROF" ]; then
	mkdir -p "$BENCH_PPROF"
	for name in ca heartbeat registration dev; do
		pprof_port[$name]=$(free_port)
	done
fi
pprof_args() {
	[ -z "${pprof_port[$1]:-}" ] || echo --pprof-listen "127.0.0.1:${pprof_port[$1]}"
}
# cpu_profiles SCENARIO NAME...: with BENCH_PPROF, the CPU profile of each
# named server over the next BENCH_PROFILE_SECONDS, taken in the background
# into BENCH_PPROF/SCENARIO-NAME-cpu.pprof; wait_profiles waits for them.
profile_pids=()
cpu_profiles() {
	local scenario=$1 name
	shift
	[ -n "$BENCH_PPROF" ] || return 0
	for name in "$@"; do
		curl -sSf -o "$BENCH_PPROF/$scenario-$name-cpu.pprof" \
			"http://127.0.0.1:${pprof_port[$name]}/debug/pprof/profile?seconds=$BENCH_PROFILE_SECONDS" &
		profile_pids+=("$!")
		pids+=("$!")
	done
}
wait_profiles() {
	local p
	for p in "${profile_pids[@]}"; do
		wait "$p" || say "a CPU profile was not taken"
	done
	profile_pids=()
}
# The CA first: the others dial it.
# shellcheck disable=SC2046 # pprof_args gives words or nothing
serve ca ca "$ca_port" $(pprof_args ca)
serve bundles bundles "$bundles_port" --ca-addr "127.0.0.1:$ca_port"
# shellcheck disable=SC2046
GODEBUG=$BENCH_HB_GODEBUG serve heartbeat heartbeat "$heartbeat_port" --ca-addr "127.0.0.1:$ca_port" $(pprof_args heartbeat)
# Replica i (1-based) of the heartbeat service and the registration service
# that names it; replica 1 is the pair started first.
hb_ports=("$heartbeat_port")
reg_ports=("$registration_port")
# serve_registration I: replica I of the registration service on its port,
# with the bundle store and replica I of the heartbeat service.
serve_registration() {
	local i=$1 name=registration
	[ "$i" -eq 1 ] || name=registration$i
	# shellcheck disable=SC2046
	serve "$name" registration "${reg_ports[$((i - 1))]}" --ca-addr "127.0.0.1:$ca_port" \
		--bundles-addr "127.0.0.1:$bundles_port" --heartbeat-addr "127.0.0.1:${hb_ports[$((i - 1))]}" \
		--advertise-bundles "127.0.0.1:$bundles_port" --advertise-heartbeat "127.0.0.1:${hb_ports[$((i - 1))]}" $(pprof_args "$name")
}
serve_registration 1
server_names=(ca bundles heartbeat registration)
for i in $(seq 2 "$BENCH_HB_REPLICAS"); do
	hp=$(free_port)
	rp=$(free_port)
	serve "heartbeat$i" heartbeat "$hp" --ca-addr "127.0.0.1:$ca_port"
	hb_ports+=("$hp")
	reg_ports+=("$rp")
	serve_registration "$i"
	server_names+=("heartbeat$i" "registration$i")
done
# server_pids names every server's process for berth-loadgen's CPU figures.
set_server_pids() {
	server_pids=
	for name in "${server_names[@]}"; do
		server_pids="${server_pids:+$server_pids,}$name=${role_pid[$name]}"
	done
}
set_server_pids

# Synthetic nodes fill the registry's index the way a large fleet would.
# They are approved and hold a certificate record, so nothing about them is
# ever signed; no loadgen node collides with them (other keys, IDs and UUIDs).
if [ "$BENCH_PRELOAD" -gt 0 ]; then
	psql=$(command -v psql || ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | tail -n 1)
	[ -n "$psql" ] || die "BENCH_PRELOAD needs psql"
	say "preloading $BENCH_PRELOAD synthetic registered nodes"
	"$psql" -q -v ON_ERROR_STOP=1 "$BENCH_DB" >/dev/null <<SQL || die "preload failed"
INSERT INTO reg_nodes (id, status, key_sha256, hardware_uuid, macs, hostname, serial, labels,
	bundle_kem, bundle_key, csr, token_id, replacement_allowed, cert_serial, cert_not_before,
	cert_not_after, cert_chain, certificates_issued, created_at, updated_at)
SELECT 'preload' || lpad(g::text, 12, '0'), 'approved', sha256(('berth-preload-' || g)::bytea),
	'fffffff0-0000-4000-8000-' || lpad(g::text, 12, '0'), '{}', 'pre-' || g, '', '{}',
	25722, '\\x00', '\\x00', 'preload0', false, lpad(to_hex(g), 16, '0'), now(),
	now() + interval '30 days', ARRAY['\\x00'::bytea], 1, now(), now()
FROM generate_series(1, $BENCH_PRELOAD) AS g;
ANALYZE reg_nodes;
SQL
fi

# How berth-loadgen reaches them: as berthctl would, with the admin
# certificate of the PKI. lg_at I reaches replica I's registration and
# heartbeat services; lg is lg_at 1.
lg_at() {
	local i=$1
	shift
	BERTH_SERVER="127.0.0.1:${reg_ports[$((i - 1))]}" \
		BERTH_BUNDLES_SERVER="127.0.0.1:$bundles_port" \
		BERTH_HEARTBEAT_SERVER="127.0.0.1:${hb_ports[$((i - 1))]}" \
		BERTH_CA_SERVER="127.0.0.1:$ca_port" \
		BERTH_CA="$work/pki/admin/ca.crt" BERTH_CERT="$work/pki/admin/admin.crt" BERTH_KEY="$work/pki/admin/admin.key" \
		BERTH_SERVER_PIDS="$server_pids" BERTH_DB_PID="${db_pid:-}" \
		"$loadgen" "$@"
}
lg() { lg_at 1 "$@"; }

# heartbeat_parallel: the heartbeat scenario as BENCH_HB_LOADGENS load
# generators in parallel, process i against replica i mod BENCH_HB_REPLICAS,
# combined into one result. Each sets the interval and leaves it set (none
# may put it back while the others beat), and all start their window once
# all are connected.
heartbeat_parallel() {
	local n=$BENCH_HB_LOADGENS i nodes per rest sync="$work/hb-sync" lpids=() ok=1 conc
	per=$((BENCH_HB_NODES / n))
	# Processes that share a replica share BENCH_CONCURRENCY too: their
	# untimed setup registers every node through it, and a registration
	# service given several times its concurrency only times calls out.
	conc=$((BENCH_CONCURRENCY * BENCH_HB_REPLICAS / n))
	[ "$conc" -ge 1 ] || conc=1
	rest=$((BENCH_HB_NODES - per * n))
	mkdir -p "$sync"
	say "---- heartbeat: $n berth-loadgen heartbeat processes in parallel against $BENCH_HB_REPLICAS heartbeat instance(s), $BENCH_HB_NODES nodes in all"
	for i in $(seq 1 "$n"); do
		nodes=$per
		[ "$i" -eq 1 ] && nodes=$((per + rest))
		lg_at $(((i - 1) % BENCH_HB_REPLICAS + 1)) heartbeat --nodes "$nodes" --concurrency "$conc" --seed "$seed-hb$i" \
			--interval "$BENCH_HB_INTERVAL" --duration "$BENCH_HB_DURATION" --keep-interval \
			--sync-dir "$sync" --sync-procs "$n" --db "$BENCH_DB" -o json \
			>"$work/heartbeat$i.json" 2> >(sed -u "s/^/[heartbeat $i] /" >&2) &
		lpids+=("$!")
		pids+=("$!")
	done
	for i in $(seq 1 "$n"); do
		if ! wait "${lpids[$((i - 1))]}"; then
			say "heartbeat process $i FAILED"
			ok=0
		fi
	done
	if [ "$ok" -eq 1 ]; then
		local files=()
		for i in $(seq 1 "$n"); do files+=("$work/heartbeat$i.json"); done
		"$loadgen" combine -o json "${files[@]}" >>"$results" || ok=0
	fi
	if [ "$ok" -ne 1 ]; then
		# A failed process would leave the others waiting for it.
		for p in "${lpids[@]}"; do kill "$p" 2>/dev/null || true; done
		say "heartbeat FAILED"
		failed=1
	fi
}

# register_dev: BENCH_NODES fresh nodes (a seed of their own) register with
# berthd dev, which runs every role in one process on SQLite in its own data
# directory; its result is labelled dev.
register_dev() {
	local port pid dir="$work/dev" ok=1
	port=$(free_port)
	mkdir -p "$dir"
	say "---- register-dev: berthd dev on 127.0.0.1:$port, berth-loadgen register"
	# shellcheck disable=SC2046 # pprof_args gives words or nothing
	"$berthd" dev --data-dir "$dir" --listen "127.0.0.1:$port" --metrics-listen "" \
		--max-unauthenticated-per-source 0 --log-level warn $(pprof_args dev) >"$work/logs/dev.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	for _ in $(seq 150); do
		[ -s "$dir/env" ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if [ ! -s "$dir/env" ]; then
		say "berthd dev did not start: $(tail -n 5 "$work/logs/dev.log")"
		ok=0
	else
		probe register_dev
		cpu_profiles register-dev dev
		if ! (
			# shellcheck disable=SC1091 # written by berthd dev
			. "$dir/env"
			BERTH_SERVER_PIDS="dev=$pid" "$loadgen" register --nodes "$BENCH_NODES" --concurrency "$BENCH_CONCURRENCY" \
				--seed "$seed-dev" --deployment dev -o json
		) >>"$results"; then
			ok=0
		fi
		wait_profiles
	fi
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	if [ "$ok" -ne 1 ]; then
		say "register-dev FAILED"
		failed=1
	fi
}

# stepca_sign: a throwaway step-ca, started for the scenario alone and
# stopped after it, signs BENCH_NODES certificates for berth-loadgen
# stepca-sign, which reports its CPU (rusage of the process) per sign.
stepca_sign() {
	local port pid dir="$work/stepca" ok=1
	port=$(free_port)
	say "---- stepca-sign: step-ca on 127.0.0.1:$port, berth-loadgen stepca-sign"
	if ! "$loadgen" stepca-init --stepca-dir "$dir" --stepca-listen "127.0.0.1:$port"; then
		say "stepca-sign FAILED"
		failed=1
		return
	fi
	"$stepca" "$dir/ca.json" >"$work/logs/stepca.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	for _ in $(seq 150); do
		grep -q 'Serving HTTPS' "$work/logs/stepca.log" && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if ! grep -q 'Serving HTTPS' "$work/logs/stepca.log"; then
		say "step-ca did not start: $(tail -n 5 "$work/logs/stepca.log")"
		ok=0
	else
		probe stepca-sign
		if ! "$loadgen" stepca-sign --stepca-dir "$dir" --nodes "$BENCH_NODES" --concurrency "$BENCH_CONCURRENCY" \
			--server-pids "stepca=$pid" -o json >>"$results"; then
			ok=0
		fi
	fi
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	if [ "$ok" -ne 1 ]; then
		say "stepca-sign FAILED"
		failed=1
	fi
}

# restore: the power restore itself. Every registration replica restarts,
# as it does with the fleet, its bundle cache empty until it fills it, and
# the storm's nodes (registered, approved and given bundles by the storm
# scenario, which must run first) boot again at once without any setup:
# berth-loadgen storm --no-prepare, reported as storm_restarted.
restore() {
	local i name
	say "---- restore: restarting the registration service, then the storm's nodes boot at once"
	for i in $(seq 1 "$BENCH_HB_REPLICAS"); do
		name=registration
		[ "$i" -eq 1 ] || name=registration$i
		kill "${role_pid[$name]}"
		wait "${role_pid[$name]}" 2>/dev/null || true
		serve_registration "$i"
	done
	set_server_pids
	probe storm_restarted
	cpu_profiles restore registration heartbeat
	step storm --nodes "$BENCH_NODES" --concurrency "$BENCH_CONCURRENCY" --seed "$seed" --no-prepare --deployment restarted \
		${BENCH_PPROF:+--profile-dir "$BENCH_PPROF/restore"}
	wait_profiles
}

results="$work/results.json"
: >"$results"
step() {
	local name=$1
	shift
	say "---- $name: berth-loadgen $name $*"
	if ! lg "$name" "$@" -o json >>"$results"; then
		say "$name FAILED"
		failed=1
	fi
}
# probing: whether BENCH_PROBE_DURATION asks for probes (0 or 0s: none).
probing() { case "$BENCH_PROBE_DURATION" in 0 | 0s) return 1 ;; esac; }
# probe NAME: the ceiling again, just before the result the report names
# NAME (BENCH_PROBE_DURATION), which the report judges NAME against too.
probe() {
	probing || return 0
	step ceiling --duration "$BENCH_PROBE_DURATION" --probe-for "$1"
}
# probe_flag: the same probe made by berth-loadgen storm itself, after its
# setup, right before it releases the boots (--probe).
probe_flag() {
	probing || return 0
	printf -- '--probe %s' "$BENCH_PROBE_DURATION"
}
seed="bench-$(date +%s)"
for s in $BENCH_SCENARIOS; do
	case "$s" in
	ceiling) step ceiling --duration "$BENCH_CEILING_DURATION" ;;
	grpc-floor | boot-floor | register-floor)
		probe "$s"
		step "$s" --duration "$BENCH_CEILING_DURATION" --concurrency "$BENCH_CONCURRENCY" --profile-dir "${BENCH_PPROF:-$work}" ;;
	stream-floor)
		step stream-floor --nodes "$BENCH_HB_NODES" --concurrency "$BENCH_CONCURRENCY" \
			--interval "$BENCH_HB_INTERVAL" --duration "$BENCH_HB_DURATION" --profile-dir "${BENCH_PPROF:-$work}"
		;;
	register)
		probe register
		cpu_profiles register registration ca
		step register --nodes "$BENCH_NODES" --concurrency "$BENCH_CONCURRENCY" --seed "$seed" ${BENCH_PPROF:+--profile-dir "$BENCH_PPROF"}
		wait_profiles
		;;
	register-dev) register_dev ;;
	stepca-sign) stepca_sign ;;
	storm)
		# Its probe comes from the load generator, after the setup (a
		# minute at 10,000 nodes), right before the boots.
		step storm --nodes "$BENCH_NODES" --concurrency "$BENCH_CONCURRENCY" --seed "$seed" $(probe_flag) ${BENCH_PPROF:+--profile-dir "$BENCH_PPROF"} ;;
	restore) restore ;;
	heartbeat)
		if [ "$BENCH_HB_LOADGENS" -gt 1 ]; then
			heartbeat_parallel
		else
			step heartbeat --nodes "$BENCH_HB_NODES" --concurrency "$BENCH_CONCURRENCY" --seed "$seed" \
				--interval "$BENCH_HB_INTERVAL" --duration "$BENCH_HB_DURATION" --db "$BENCH_DB" \
				${BENCH_PPROF:+--profile-url "http://127.0.0.1:${pprof_port[heartbeat]}/debug/pprof" --profile-dir "$BENCH_PPROF"}
		fi
		;;
	*) die "unknown scenario $s in BENCH_SCENARIOS" ;;
	esac
done

echo
"$loadgen" report --out "$BENCH_OUT" "$results"
echo
say "results written to $BENCH_OUT"
for role in "${server_names[@]}"; do
	if [ -s "$work/logs/$role.log" ] && grep -q 'level=ERROR' "$work/logs/$role.log"; then
		say "$role logged errors: $(grep -c 'level=ERROR' "$work/logs/$role.log") lines, e.g. $(grep -m 1 'level=ERROR' "$work/logs/$role.log")"
	fi
done
exit "$failed"
