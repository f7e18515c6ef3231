#!/usr/bin/env bash
# fuzz.sh — run every fuzz target in the module for a short while and fail
# if any of them finds a crash. Targets are discovered, not listed: a new
# func FuzzX(f *testing.F) in any package is picked up on the next run.
#
#   FUZZTIME     time per target (default 5s; a Go duration in seconds)
#   FUZZ_BUDGET  seconds for all targets together (default 120): with many
#                targets each gets less than FUZZTIME, but at least 1s
#   GO           the go command (default go)
#
# A crash leaves its input in the package's testdata/fuzz/FuzzX/, where
# `go test -run FuzzX/NAME` replays it; commit it with the fix as a
# regression case.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}
FUZZ_BUDGET=${FUZZ_BUDGET:-120}

log() { printf 'fuzz: %s\n' "$*" >&2; }

# The cheap first cut: packages whose test files mention a Fuzz function.
# Only those are compiled to list their targets.
mapfile -t candidates < <(
	"$GO" list -f '{{.ImportPath}}{{range .TestGoFiles}} {{$.Dir}}/{{.}}{{end}}{{range .XTestGoFiles}} {{$.Dir}}/{{.}}{{end}}' ./... |
		while read -r pkg files; do
			# shellcheck disable=SC2086 # a list of paths without spaces
			[ -z "$files" ] || ! grep -qs '^func Fuzz' $files || echo "$pkg"
		done
)
if [ ${#candidates[@]} -eq 0 ]; then
	log "no fuzz targets in the module"
	exit 0
fi

# go test -list prints a package's matching names, then its "ok" line.
targets=()
names=()
while read -r first second _; do
	case "$first" in
	Fuzz*) names+=("$first") ;;
	ok)
		for n in "${names[@]}"; do targets+=("$second $n"); done
		names=()
		;;
	esac
done < <("$GO" test -list '^Fuzz' "${candidates[@]}")
if [ ${#targets[@]} -eq 0 ]; then
	log "no fuzz targets in the module"
	exit 0
fi

per=${FUZZTIME%s}
if [[ "$per" =~ ^[0-9]+$ ]] && [ $((per * ${#targets[@]})) -gt "$FUZZ_BUDGET" ]; then
	per=$((FUZZ_BUDGET / ${#targets[@]}))
	[ "$per" -ge 1 ] || per=1
	log "${#targets[@]} targets in a budget of ${FUZZ_BUDGET}s: ${per}s each instead of $FUZZTIME"
fi
[[ ! "$per" =~ ^[0-9]+$ ]] || per=${per}s

# fuzz_one PKG NAME TIME fuzzes one target. go test -fuzz sometimes fails a
# run with only "context deadline exceeded", when -fuzztime ends while a
# worker is still answering; no input failed and none is written. Such a
# run is repeated once; a crash (its input written to testdata/fuzz/) never
# is.
fuzz_one() {
	local out rc attempt
	for attempt in 1 2; do
		# -run limits the ordinary tests run first to this target's seed corpus.
		set +e
		out=$("$GO" test -run "^${2}\$" -fuzz "^${2}\$" -fuzztime "$3" "$1" 2>&1)
		rc=$?
		set -e
		printf '%s\n' "$out"
		[ "$rc" -ne 0 ] || return 0
		if [ "$attempt" -eq 2 ] || grep -q 'Failing input written' <<<"$out" ||
			! grep -q 'context deadline exceeded' <<<"$out"; then
			return "$rc"
		fi
		log "$1 $2 ended on the fuzzing deadline with no failing input; once more"
	done
}

start=$(date +%s)
failed=()
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	log "$pkg $name for $per"
	if ! fuzz_one "$pkg" "$name" "$per"; then
		failed+=("$pkg $name")
	fi
done
log "${#targets[@]} targets in $(($(date +%s) - start))s"
if [ ${#failed[@]} -gt 0 ]; then
	for f in "${failed[@]}"; do log "FAILED: $f (its input is in the package's testdata/fuzz/)"; done
	exit 1
fi
