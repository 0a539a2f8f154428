#!/bin/sh
# archive_command of the Postgres service (compose/base.yml):
#   sh /etc/fog/archive-wal.sh %p %f
# Copies one finished WAL segment (or a timeline .history file) into the WAL
# archive volume and exits 0 only once the copy is durable: copied to a
# temporary name, fsynced, renamed, and the directory fsynced. A file of the
# same name that is byte-identical is accepted (Postgres re-archives after a
# crash); a different one is refused, so Postgres keeps the segment and
# retries. POSIX sh, cmp and sync only: runs in the Debian-based offline image
# and in the upstream Alpine (busybox) one.
set -eu
src=$1
name=$2
# The postgres_wal_archive volume is mounted on /var/lib/postgresql.
dir=${FOG_WAL_ARCHIVE_DIR:-/var/lib/postgresql/wal-archive}
mkdir -p "$dir"
dest=$dir/$name
if [ -e "$dest" ]; then
	if cmp -s "$src" "$dest"; then
		exit 0
	fi
	echo "archive-wal: $dest exists with different contents; refusing to overwrite it" >&2
	exit 1
fi
tmp=$dir/.$name.partial
rm -f "$tmp"
cp "$src" "$tmp"
sync "$tmp"
mv "$tmp" "$dest"
sync "$dir"
