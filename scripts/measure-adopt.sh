#!/bin/bash
# Times each phase of `cargo xtask adopt` on a 1 GiB database and a 1 GB
# volume: starts the old-layout fixture (xtask/tests/fixtures/legacy-adopt)
# as project `fogad-bench` (subnet 10.236.200.0/24, ports 47500-47513), fills
# fog_compute with 1,000,000 rows of 896 hex chars and `prometheus-data` with
# 16 random files of 62.5 MB, adopts it into dev (project `fogad-benchnew`,
# stub images for Prometheus, Grafana and Loki, the real migrate image), and
# removes both projects on exit. Needs the offline Postgres image
# (`cargo xtask images offline --only postgres`), `fog-compute/migrate:0.1.0`
# (`cargo xtask images build migrate`) and the tests' stub image `fogt-stub:2`
# (built by `cargo test -p xtask --test adopt`).
#   bash scripts/measure-adopt.sh
set -u
W=$(cd "$(dirname "$0")/.." && pwd)
B=$(mktemp -d /tmp/fogad-bench.XXXXXX); OLD=$B/fogad-bench; NEWD=$B/new
PG=$(docker images fog-offline/postgres --format '{{.Repository}}:{{.Tag}}' | head -1); STUB=fogt-stub:2
[ -n "$PG" ] || { echo "no fog-offline/postgres image: cargo xtask images offline --only postgres" >&2; exit 2; }
cleanup() {
  for p in fogad-bench fogad-benchnew; do
    ids=$(docker ps -aq --filter label=com.docker.compose.project=$p); [ -n "$ids" ] && docker rm -f -v $ids >/dev/null
    for v in $(docker volume ls -q --filter name=${p}_); do docker volume rm -f $v >/dev/null; done
  done
  for n in fogad-bench_legacy fogad-benchnew-fog fogad-benchnew-betanet; do docker network rm $n >/dev/null 2>&1; done
}
trap 'cleanup; rm -rf "$B"' EXIT
cleanup
mkdir -p $OLD $NEWD
cp $W/xtask/tests/fixtures/legacy-adopt/docker-compose.yml $OLD/
cat > $OLD/.env <<E2
LEGACY_POSTGRES_IMAGE=$PG
LEGACY_PROMETHEUS_IMAGE=$STUB
LEGACY_REDIS_IMAGE=$STUB
LEGACY_POSTGRES_PORT=47500
LEGACY_PROMETHEUS_PORT=47501
LEGACY_SUBNET=10.236.200.0/24
E2
cat > $NEWD/.env <<E2
COMPOSE_PROJECT_NAME=fogad-benchnew
FOG_NETWORK_NAME=fogad-benchnew-fog
FOG_NETWORK_SUBNET=10.236.201.0/24
BETANET_NETWORK_NAME=fogad-benchnew-betanet
BETANET_NETWORK_SUBNET=10.236.202.0/24
POSTGRES_USER=fog
POSTGRES_DB=fog
POSTGRES_PASSWORD=Vb3nQx7pLr2Wm9sK4tYc8dHe
GRAFANA_ADMIN_USER=admin
GRAFANA_ADMIN_PASSWORD=Ua2mPw6xJq1Ls5tRb8nCv3Df
FOG_SECRETS_DIR=$NEWD/secrets
POSTGRES_IMAGE=$PG
PROMETHEUS_IMAGE=$STUB
GRAFANA_IMAGE=$STUB
LOKI_IMAGE=$STUB
POSTGRES_PORT=47510
PROMETHEUS_PORT=47511
GRAFANA_PORT=47512
LOKI_PORT=47513
E2
cd $OLD && docker compose -p fogad-bench up -d
PGC=$(docker ps -q --filter label=com.docker.compose.project=fogad-bench --filter label=com.docker.compose.service=postgres)
until docker exec $PGC psql -U fog_user -d fog_compute -c 'select 1' >/dev/null 2>&1; do sleep 1; done
t0=$(date +%s)
docker exec $PGC psql -q -U fog_user -d fog_compute -c "CREATE TABLE big AS SELECT g AS id, (SELECT string_agg(md5((g * 31 + i)::text), '') FROM generate_series(1, 28) i) AS pad FROM generate_series(1, 1000000) g; CREATE TABLE small AS SELECT g AS id FROM generate_series(1, 1000) g;"
docker exec $PGC psql -At -U fog_user -d fog_compute -c "SELECT pg_size_pretty(pg_database_size('fog_compute')), pg_database_size('fog_compute')"
docker run --rm --network none -v fogad-bench_prometheus-data:/v --entrypoint sh $PG -c 'for i in $(seq 1 16); do head -c 62500000 /dev/urandom > /v/chunk-$i; done; du -sb /v'
echo "data written in $(( $(date +%s) - t0 ))s"
cd $W && env FOG_ENV_FILE=$NEWD/.env cargo run -q -p xtask -- adopt --from $OLD/docker-compose.yml --env dev --yes --skip-images --dir $B/sets
cd $W && env FOG_ENV_FILE=$NEWD/.env cargo run -q -p xtask -- psql -- -At -c "SELECT pg_size_pretty(pg_database_size('fog')), count(*) FROM big"
du -sh $B/sets/*/* 
