#!/bin/bash
# RPO under constant writes (README "Measured here"): a throwaway project
# `fogpitr-m` (subnets 10.240.1.0/24 and .2.0/24, no published port) with WAL
# archiving on and the default archive_timeout (60 s); `backup base`; one
# INSERT every ~0.1 s for RUN seconds (default 130); kill -9 of Postgres; then
# the newest committed row that survives (a) on the data volume (crash
# recovery) and (b) from the base backup and the WAL archive alone (the disk
# is lost), against the wall clock of the kill. Needs the offline Postgres
# image (`cargo xtask images offline --only postgres`) and a built xtask.
# Usage: bash scripts/pitr-rpo.sh   (from the repository root)
set -u
T=$(mktemp -d)
E=$T/.env
IMG=${POSTGRES_IMAGE:-fog-offline/postgres:15.18-bookworm}
cat > $E <<ENV
COMPOSE_PROJECT_NAME=fogpitr-m
FOG_NETWORK_NAME=fogpitr-m-fog
FOG_NETWORK_SUBNET=10.240.1.0/24
BETANET_NETWORK_NAME=fogpitr-m-betanet
BETANET_NETWORK_SUBNET=10.240.2.0/24
POSTGRES_USER=fog
POSTGRES_DB=fog
POSTGRES_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
GRAFANA_ADMIN_PASSWORD=unused-unused-unused-unused
POSTGRES_IMAGE=$IMG
POSTGRES_WAL_ARCHIVE=on
ENV
chmod 600 $E
trap 'docker rm -f fogpitr-m-rec >/dev/null 2>&1; docker volume rm fogpitr-m-rec >/dev/null 2>&1; dc down -v >/dev/null 2>&1; rm -rf $T' EXIT
dc() { docker compose --project-directory compose --env-file $E -p fogpitr-m -f compose/base.yml "$@"; }
x() { FOG_ENV_FILE=$E ${XTASK:-target/debug/xtask} "$@"; }
dc up -d postgres >/dev/null 2>&1
C=$(dc ps -q postgres)
until docker exec $C psql -U fog -d fog -Atc 'select 1' >/dev/null 2>&1; do sleep 1; done
docker exec $C psql -U fog -d fog -Atc "SHOW archive_timeout; CREATE TABLE r (id bigserial primary key, at timestamptz default clock_timestamp())"
x backup base --dir $T/backups --format json | head -c 300; echo
BASE=$(ls $T/backups/*.tar.gz | tail -1)
( for i in $(seq 3000); do echo "INSERT INTO r DEFAULT VALUES; SELECT pg_sleep(0.1);"; done | docker exec -i $C psql -q -U fog -d fog >/dev/null 2>&1 ) &
W=$!
sleep ${RUN:-130}
K=$(date -u +%s.%N)
docker kill -s KILL $C >/dev/null
echo "kill -9 at $(date -u -d @$K '+%F %T.%N')"
wait $W 2>/dev/null
# (b) base backup + archive only (the data volume is lost)
docker volume create fogpitr-m-rec >/dev/null
docker run --rm -i --network none --user 0:0 -v fogpitr-m-rec:/var/lib/postgresql/data --entrypoint sh $IMG -c "set -e; d=/var/lib/postgresql/data; tar -xzf - -C \$d; echo \"restore_command = 'cp /pitr-archive/wal-archive/%f %p'\" >> \$d/postgresql.auto.conf; touch \$d/recovery.signal; chown -R postgres:postgres \$d; chmod 700 \$d" < $BASE
T0=$(date +%s.%N)
docker run -d --name fogpitr-m-rec --network none -v fogpitr-m-rec:/var/lib/postgresql/data -v fogpitr-m_postgres_wal_archive:/pitr-archive:ro $IMG postgres -c archive_mode=off >/dev/null
until [ "$(docker exec fogpitr-m-rec psql -U fog -d fog -Atc 'select pg_is_in_recovery()' 2>/dev/null)" = f ]; do sleep 0.5; done
T1=$(date +%s.%N)
A=$(docker exec fogpitr-m-rec psql -U fog -d fog -Atc "select count(*), extract(epoch from max(at)) from r")
# (a) the data volume kept: crash recovery
docker start $C >/dev/null
until docker exec $C psql -U fog -d fog -Atc 'select 1' >/dev/null 2>&1; do sleep 1; done
L=$(docker exec $C psql -U fog -d fog -Atc "select count(*), extract(epoch from max(at)) from r")
echo "data volume kept: rows|newest = $L ; RPO = $(echo "$K - ${L#*|}" | bc) s"
echo "archive only:     rows|newest = $A ; RPO = $(echo "$K - ${A#*|}" | bc) s; replay+promote $(echo "$T1 - $T0" | bc) s"
docker rm -f fogpitr-m-rec >/dev/null; docker volume rm fogpitr-m-rec >/dev/null
