#!/bin/bash
# Entrypoint of berth's locally built PostgreSQL image (build-image.sh). It
# follows the official postgres image's contract, so compose.yaml configures
# both the same way:
#   POSTGRES_USER (default postgres), POSTGRES_PASSWORD (required unless
#   POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_DB (default $POSTGRES_USER),
#   POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default scram-sha-256),
#   PGDATA (default /var/lib/postgresql/data), /docker-entrypoint-initdb.d/
#   (*.sh, *.sql run once, on first start), port 5432, "postgres" as command.
# On the first start it creates the cluster in $PGDATA (a volume); later
# starts find PG_VERSION there and just run the server, as the postgres user.
set -Eeuo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

log() { printf '%s [entrypoint] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }

# "docker run IMAGE -c shared_buffers=1GB" means postgres with those options.
if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

if [ "$1" != postgres ]; then
	exec "$@"
fi

# As root: make the data and socket directories the postgres user's, then
# run this script again as that user.
if [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	if [ "$(stat -c %u "$PGDATA")" != "$(id -u postgres)" ]; then
		chown -R postgres:postgres "$PGDATA"
	fi
	chmod 0700 "$PGDATA"
	chown postgres:postgres /var/run/postgresql
	chmod 2775 /var/run/postgresql
	exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	: "${POSTGRES_USER:=postgres}"
	: "${POSTGRES_DB:=$POSTGRES_USER}"
	: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
	if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
		log "error: the database is uninitialized and POSTGRES_PASSWORD is not set" \
			"(set it, or POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without one)"
		exit 1
	fi
	log "initializing a new cluster in $PGDATA for user $POSTGRES_USER"
	pwfile=()
	if [ -n "${POSTGRES_PASSWORD:-}" ]; then
		pw=$(mktemp)
		trap 'rm -f "$pw"' EXIT
		printf '%s\n' "$POSTGRES_PASSWORD" >"$pw"
		pwfile=(--pwfile="$pw")
	fi
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words.
	initdb --username="$POSTGRES_USER" "${pwfile[@]}" --auth-local=trust \
		--auth-host="$POSTGRES_HOST_AUTH_METHOD" --encoding=UTF8 --locale=C.UTF-8 \
		${POSTGRES_INITDB_ARGS:-} -D "$PGDATA" >/dev/null
	printf '\n# compose network: every host, password required\nhost all all all %s\n' \
		"$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
	printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

	# A temporary server on the socket only, so nobody connects over TCP
	# (and a TCP healthcheck does not pass) before the database exists.
	pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w -s start
	psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres -q)
	if [ "$POSTGRES_DB" != postgres ]; then
		"${psql[@]}" --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
	fi
	shopt -s nullglob
	for f in /docker-entrypoint-initdb.d/*; do
		# shellcheck disable=SC1090 # the image user's own scripts
		case "$f" in
		*.sh) log "running $f"; . "$f" ;;
		*.sql) log "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
		*) log "ignoring $f" ;;
		esac
	done
	shopt -u nullglob
	pg_ctl -D "$PGDATA" -m fast -w -s stop
	rm -f "${pw:-}"
	log "cluster ready"
fi

exec "$@"
