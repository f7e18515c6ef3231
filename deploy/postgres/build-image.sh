#!/bin/bash
# build-image.sh [IMAGE] — build a PostgreSQL image locally, without pulling
# anything from a container registry: a Debian root filesystem made with
# debootstrap from the host's Debian mirror, Debian's postgresql package, and
# docker-entrypoint.sh (compatible with the official postgres image's
# POSTGRES_* environment, data directory, port and pg_isready). Loaded with
# `docker import`.
#
# Cached: when IMAGE already exists and was built from this very recipe
# (this script, the entrypoint, suite and version; a label records it), it
# returns at once. FORCE=1 rebuilds. Needs root (debootstrap, chroot) and the
# debootstrap package.
#
#   IMAGE                  default $BERTH_POSTGRES_LOCAL_IMAGE or berth-postgres:15
#   BERTH_DEBIAN_MIRROR    default: the mirror apt uses on this host
#   BERTH_DEBIAN_SECURITY  default: the host's debian-security mirror, if any
#   BERTH_DEBOOTSTRAP_CACHE  where downloaded .debs are kept between builds
#                          (default /var/cache/berth/debootstrap)
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IMAGE=${1:-${BERTH_POSTGRES_LOCAL_IMAGE:-berth-postgres:15}}
SUITE=bookworm
PG_MAJOR=15

log() { printf 'build-image.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

recipe=$(cat "${BASH_SOURCE[0]}" "$here/docker-entrypoint.sh" <(echo "$SUITE $PG_MAJOR") |
	sha256sum | cut -c1-16)

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

[ "$(id -u)" = 0 ] || die "building $IMAGE needs root (debootstrap and chroot); run it with sudo"
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info)"

# One build at a time on this machine; whoever waited may find it done.
exec 9>"/tmp/berth-postgres-image.lock"
flock 9
if current; then
	log "$IMAGE was built meanwhile (recipe $recipe)"
	exit 0
fi

# The mirrors apt uses on this host: deb822 .sources files or sources.list.
host_uri() { # host_uri SUITE -> first URI serving SUITE
	local suite=$1
	{
		awk -v s="$suite" '
			/^[[:space:]]*$/ { if (u != "" && ok) { print u; exit } u = ""; ok = 0; next }
			tolower($1) == "uris:" { u = $2 }
			tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
			END { if (u != "" && ok) print u }' /etc/apt/sources.list.d/*.sources 2>/dev/null
		sed -e 's/\[[^]]*\]//' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			awk -v s="$suite" '$1 == "deb" && $3 == s { print $2 }'
	} | head -n1 || true
}
MIRROR=${BERTH_DEBIAN_MIRROR:-$(host_uri "$SUITE")}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${BERTH_DEBIAN_SECURITY-$(host_uri "$SUITE-security")}
CACHE=${BERTH_DEBOOTSTRAP_CACHE:-/var/cache/berth/debootstrap}
mkdir -p "$CACHE"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/berth-postgres.XXXXXX")
rootfs=$work/rootfs
cleanup() {
	local m
	for m in "$rootfs/var/cache/apt/archives" "$rootfs/proc"; do
		! mountpoint -q "$m" 2>/dev/null || umount "$m"
	done
	rm -rf "$work"
}
trap cleanup EXIT

start=$(date +%s)
log "debootstrap $SUITE (minbase) from $MIRROR"
debootstrap --variant=minbase --cache-dir="$CACHE" "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
	{ tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

{
	echo "deb $MIRROR $SUITE main"
	echo "deb $MIRROR $SUITE-updates main"
	[ -z "$SECURITY" ] || echo "deb $SECURITY $SUITE-security main"
} >"$rootfs/etc/apt/sources.list"
# No services start inside the chroot, and no default cluster is created:
# the entrypoint makes the cluster in the volume on first start.
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
mkdir -p "$rootfs/etc/postgresql-common"
echo 'create_main_cluster = false' >"$rootfs/etc/postgresql-common/createcluster.conf"
cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf"
mount -t proc proc "$rootfs/proc"
# Keep the downloaded packages for the next build.
mkdir -p "$CACHE/archives/partial"
mount --bind "$CACHE/archives" "$rootfs/var/cache/apt/archives"

log "installing postgresql-$PG_MAJOR"
in_root() { chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }
{
	in_root apt-get update -q &&
		in_root apt-get install -y -q --no-install-recommends "postgresql-$PG_MAJOR" &&
		in_root apt-get autoclean
} >"$work/apt.log" 2>&1 || { tail -n 30 "$work/apt.log" >&2; die "installing postgresql-$PG_MAJOR failed"; }
umount "$rootfs/var/cache/apt/archives" "$rootfs/proc"

# Trim what a database server container never reads.
rm -f "$rootfs/usr/sbin/policy-rc.d"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
	"$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
	"$rootfs"/usr/share/locale/* "$rootfs"/usr/share/i18n/* "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/var/tmp/*
# No JIT: LLVM and its bitcode are 60% of the image, and berth's short
# indexed queries never reach the JIT's cost threshold. Without llvmjit.so
# PostgreSQL simply does not compile queries (jit stays a no-op).
rm -rf "$rootfs/usr/lib/postgresql/$PG_MAJOR/lib/llvmjit"* "$rootfs/usr/lib/postgresql/$PG_MAJOR/lib/bitcode" \
	"$rootfs"/usr/lib/*-linux-gnu/libLLVM-*.so* "$rootfs"/usr/lib/*-linux-gnu/libz3.so*
: >"$rootfs/etc/resolv.conf"
install -m 0755 "$here/docker-entrypoint.sh" "$rootfs/usr/local/bin/docker-entrypoint.sh"
mkdir -p "$rootfs/docker-entrypoint-initdb.d" "$rootfs/var/lib/postgresql/data" "$rootfs/var/run/postgresql"
chroot "$rootfs" chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql
chmod 0700 "$rootfs/var/lib/postgresql/data"
# shellcheck disable=SC2016 # a dpkg-query format, not a shell expression
version=$(chroot "$rootfs" dpkg-query -W -f '${Version}' "postgresql-$PG_MAJOR")

log "importing $IMAGE (postgresql-$PG_MAJOR $version)"
# docker import cannot set STOPSIGNAL, so a one-line build on top adds it:
# SIGINT is PostgreSQL's fast shutdown, as in the official image (SIGTERM
# would wait for every client to disconnect).
base="$IMAGE-rootfs"
old=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
tar --numeric-owner -C "$rootfs" -cf - . | docker import \
	-c "ENV PATH=/usr/lib/postgresql/$PG_MAJOR/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
	-c "ENV PG_MAJOR=$PG_MAJOR" \
	-c "ENV PGDATA=/var/lib/postgresql/data" \
	-c "ENV LANG=C.UTF-8" \
	-c 'VOLUME /var/lib/postgresql/data' \
	-c 'EXPOSE 5432' \
	-c 'ENTRYPOINT ["docker-entrypoint.sh"]' \
	-c 'CMD ["postgres"]' \
	-m "berth deploy/postgres/build-image.sh" - "$base" >/dev/null
docker build -q -t "$IMAGE" - >"$work/build.log" 2>&1 <<EOF || { cat "$work/build.log" >&2; die "docker build failed"; }
FROM $base
STOPSIGNAL SIGINT
LABEL dev.berth.recipe="$recipe" \\
      org.opencontainers.image.description="PostgreSQL $PG_MAJOR ($version) on Debian $SUITE, built locally by berth"
EOF
docker rmi "$base" >/dev/null
# Drop the image this one replaces, unless a container still uses it.
if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ]; then
	docker rmi "$old" >/dev/null 2>&1 || true
fi
log "built $IMAGE in $(($(date +%s) - start))s: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
