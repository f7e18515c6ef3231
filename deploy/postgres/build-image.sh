#!/bin/bash
# build-image.sh [IMAGE] — build a PostgreSQL image locally, without pulling
# anything and without a root filesystem tool such as debootstrap: FROM
# scratch, with the PostgreSQL server binaries already installed on this
# host (/usr/lib/postgresql/15, /usr/share/postgresql/15), the shared
# libraries they load (found with ldd), /bin/sh (initdb and pg_ctl call
# it), locale and the C.UTF-8 locale, the time zone database, a passwd with
# the postgres user, and a Go entrypoint (deploy/postgres/entrypoint)
# compatible with the official postgres image's POSTGRES_* environment,
# data directory, port 5432 and pg_isready.
#
# Cached: the image carries a label with the hash of its recipe (this
# script, the entrypoint binary, and every file copied in with its
# checksum); when IMAGE exists with the same hash it returns at once, and a
# host package upgrade rebuilds it. FORCE=1 rebuilds. Needs go, ldd, a
# Docker engine, and the postgresql-15 package (tools/provision.sh installs
# it); not root.
#
#   IMAGE    default $BERTH_POSTGRES_LOCAL_IMAGE or berth-postgres:15
#   GO       the go command (default go)
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
IMAGE=${1:-${BERTH_POSTGRES_LOCAL_IMAGE:-berth-postgres:15}}
PG_MAJOR=15
PG_LIB=/usr/lib/postgresql/$PG_MAJOR
PG_SHARE=/usr/share/postgresql/$PG_MAJOR
# The image's postgres user, as in the official image.
PG_UID=999

log() { printf 'build-image.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ -x "$PG_LIB/bin/postgres" ] && [ -x "$PG_LIB/bin/pg_isready" ] ||
	die "no PostgreSQL $PG_MAJOR binaries in $PG_LIB/bin: apt-get install postgresql-$PG_MAJOR (tools/provision.sh does)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info)"

start=$(date +%s.%N)
work=$(mktemp -d "${TMPDIR:-/tmp}/berth-postgres.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The entrypoint: static, so it needs nothing from the image.
(cd "$root" && CGO_ENABLED=0 "${GO:-go}" build -trimpath -ldflags='-s -w' -o "$work/docker-entrypoint" ./deploy/postgres/entrypoint) ||
	die "go build ./deploy/postgres/entrypoint failed"

# What goes in. Trees are copied as they are (their symlinks, such as
# postmaster -> postgres, stay links); single files (libraries, /bin/sh)
# are copied dereferenced. The JIT (llvmjit.so and its bitcode) is left
# out: it would pull in LLVM and Z3 (130 MB), and berth's short indexed
# queries never reach the JIT's cost threshold; without llvmjit.so
# PostgreSQL simply does not compile queries.
trees() {
	find "$PG_LIB" "$PG_SHARE" /usr/lib/locale/C.utf8 /usr/share/zoneinfo \
		\( -name 'llvmjit*' -o -name bitcode -o -path "$PG_SHARE/man" -o -path /usr/share/zoneinfo/right \) -prune -o \
		\( -type f -o -type l \) -print | sort
}
# Every shared library a program or module needs, and the loader.
singles() {
	{
		echo /bin/sh
		# initdb runs locale -a to import the collations.
		echo /usr/bin/locale
		find "$PG_LIB" -name 'llvmjit*' -prune -o -type f -perm -u+x -print | xargs -r ldd 2>/dev/null
		find "$PG_LIB" -name 'llvmjit*' -prune -o -type f -name '*.so' -print | xargs -r ldd 2>/dev/null
		ldd /bin/sh /usr/bin/locale
	} | awk 'NF == 1 && $1 ~ /^\// && $1 !~ /:$/ { print $1 }
		$2 == "=>" && $3 ~ /^\// { print $3 }
		$1 ~ /^\// && $1 !~ /:$/ && $2 ~ /^\(0x/ { print $1 }' | sort -u
}
mapfile -t tree_files < <(trees)
mapfile -t single_files < <(singles)
[ ${#single_files[@]} -gt 10 ] || die "ldd found only ${#single_files[@]} libraries: ${single_files[*]}"

# The recipe: this script, the entrypoint, every file's content and every
# link's target.
recipe=$({
	sha256sum "${BASH_SOURCE[0]}" "$work/docker-entrypoint" | cut -d' ' -f1
	printf '%s\n' "${tree_files[@]}" | while read -r f; do [ ! -L "$f" ] || printf '%s -> %s\n' "$f" "$(readlink "$f")"; done
	printf '%s\0' "${tree_files[@]}" | xargs -0 sh -c 'for f; do [ -L "$f" ] || printf "%s\0" "$f"; done' sh |
		xargs -0 sha256sum
	printf '%s\0' "${single_files[@]}" | xargs -0 sha256sum
} | sha256sum | cut -c1-16)

current() {
	[ "${FORCE:-0}" != 1 ] || return 1
	local have
	have=$(docker image inspect -f '{{index .Config.Labels "dev.berth.recipe"}}' "$IMAGE" 2>/dev/null) || return 1
	[ "$have" = "$recipe" ]
}
if current; then
	log "$IMAGE is up to date (recipe $recipe)"
	exit 0
fi

# One build at a time on this machine; whoever waited may find it done.
exec 9>"${TMPDIR:-/tmp}/berth-postgres-image.lock"
flock 9
if current; then
	log "$IMAGE was built meanwhile (recipe $recipe)"
	exit 0
fi

ctx=$work/context
rootfs=$ctx/rootfs
mkdir -p "$rootfs" "$ctx/data/data"
printf '%s\n' "${tree_files[@]#/}" | tar -C / -cf - --no-recursion -T - | tar -xf - -C "$rootfs"
printf '%s\n' "${single_files[@]#/}" | tar -C / -chf - --no-recursion -T - | tar -xf - -C "$rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/var/run/postgresql" "$rootfs/docker-entrypoint-initdb.d"
install -m 0755 "$work/docker-entrypoint" "$rootfs/usr/local/bin/docker-entrypoint"
# The official image's name, for anything that calls it by that name.
ln -s docker-entrypoint "$rootfs/usr/local/bin/docker-entrypoint.sh"
chmod 1777 "$rootfs/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\npostgres:x:%d:%d:PostgreSQL administrator:/var/lib/postgresql:/bin/sh\n' \
	"$PG_UID" "$PG_UID" >"$rootfs/etc/passwd"
printf 'root:x:0:\npostgres:x:%d:\n' "$PG_UID" >"$rootfs/etc/group"
printf 'passwd: files\ngroup: files\n' >"$rootfs/etc/nsswitch.conf"
# The loader finds the libraries through a cache of the image's own.
printf '%s\n' "${single_files[@]}" | xargs -n1 dirname | sort -u >"$rootfs/etc/ld.so.conf"
ldconfig -r "$rootfs"
chmod 0700 "$ctx/data/data"
version=$("$PG_LIB/bin/postgres" --version | awk '{print $3}')

cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
# The volume's mount point, owned by postgres: Docker copies owner and mode
# into a new named volume.
COPY --chown=$PG_UID:$PG_UID data/ /var/lib/postgresql/
ENV PATH=$PG_LIB/bin:/usr/local/bin:/usr/bin:/bin \\
    PG_MAJOR=$PG_MAJOR \\
    PGDATA=/var/lib/postgresql/data \\
    LANG=C.UTF-8
VOLUME /var/lib/postgresql/data
EXPOSE 5432
# SIGINT is PostgreSQL's fast shutdown, as in the official image (SIGTERM
# would wait for every client to disconnect).
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint"]
CMD ["postgres"]
LABEL dev.berth.recipe="$recipe" \\
      org.opencontainers.image.description="PostgreSQL $PG_MAJOR ($version) from the host's binaries, built locally by berth"
EOF

log "building $IMAGE from the host's PostgreSQL $version (${#tree_files[@]} + ${#single_files[@]} files)"
old=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
docker build -q -t "$IMAGE" "$ctx" >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; die "docker build failed"; }
# Drop the image this one replaces, unless a container still uses it.
if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ]; then
	docker rmi "$old" >/dev/null 2>&1 || true
fi
log "built $IMAGE in $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')s:" \
	"$(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
