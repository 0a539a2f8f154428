#!/bin/sh
# Entrypoint of fog-offline/postgres: initialise an empty data directory from
# POSTGRES_USER / POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) / POSTGRES_DB,
# then exec postgres in the foreground as the postgres user.
#
# Started as root (the default), it only fixes the ownership of the data and
# socket directories and reads the password file, then re-executes itself as
# postgres via setpriv. Started as postgres (`--user postgres`), it skips that.
set -eu

PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA

die() {
	echo "docker-entrypoint: error: $*" >&2
	exit 1
}

# `docker run image -c shared_buffers=...` passes flags to postgres.
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
	set -- postgres "$@"
fi

if [ "$1" != postgres ]; then
	exec "$@"
fi

if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
	[ -z "${POSTGRES_PASSWORD:-}" ] || die "set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE, not both"
	[ -r "$POSTGRES_PASSWORD_FILE" ] || die "POSTGRES_PASSWORD_FILE=$POSTGRES_PASSWORD_FILE is not readable"
	POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
	export POSTGRES_PASSWORD
	unset POSTGRES_PASSWORD_FILE
fi

if [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres "$PGDATA" /var/run/postgresql
	# A volume first used by another image (upstream's postgres is uid 70 or
	# 999) keeps its files: hand them to this image's postgres user.
	find "$PGDATA" ! -user postgres -exec chown postgres:postgres {} +
	chmod 0700 "$PGDATA"
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	[ -w "$PGDATA" ] || die "$PGDATA is not writable by $(id -un) (uid $(id -u)); start the container as root once, or chown the volume"
	[ -n "${POSTGRES_PASSWORD:-}" ] || die "the database is uninitialised: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE"
	user=${POSTGRES_USER:-postgres}
	db=${POSTGRES_DB:-$user}
	pwfile=$(mktemp)
	trap 'rm -f "$pwfile"' EXIT
	printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
	initdb --username="$user" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
		--auth-local=trust --auth-host=scram-sha-256 >/dev/null
	rm -f "$pwfile"
	trap - EXIT
	{
		echo "listen_addresses = '*'"
		echo "password_encryption = scram-sha-256"
	} >>"$PGDATA/postgresql.conf"
	echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
	if [ "$db" != postgres ]; then
		quoted=$(printf '%s' "$db" | sed 's/"/""/g')
		echo "CREATE DATABASE \"$quoted\";" |
			postgres --single -j -D "$PGDATA" postgres >/dev/null
	fi
	echo "docker-entrypoint: initialised $PGDATA (user $user, database $db)"
fi

unset POSTGRES_PASSWORD
exec "$@"
