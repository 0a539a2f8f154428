#!/usr/bin/env bash
# Validate the compose overlays: runs `cargo xtask check` (arguments are passed
# through, e.g. `--format json` or an environment name); then promtool
# (Prometheus config, rules, rule unit tests), amtool (Alertmanager config) and
# Compose itself, which renders every named environment with `config -q`.
# Compose uses the repo-root .env if present, else .env.example.
# A missing tool is a failure naming it under CI=true (scripts/ci-setup.sh
# installs all three); outside CI it is skipped with a line saying so.
#
# Usage: scripts/test-docker-configs.sh [cargo xtask check arguments...]
# Exit status: non-zero if any check fails; every check runs regardless.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

echo "==> cargo xtask check $*"
xtask_status=0 # set non-zero by a failed xtask check, promtool or amtool run
cargo xtask check "$@" || xtask_status=$?

# CI=true (any value but empty or "false") turns a missing tool into a failure.
in_ci=0
[[ -n "${CI:-}" && "${CI}" != "false" ]] && in_ci=1

# missing TOOL WHAT: fail under CI, else say what is skipped.
missing() {
    if [[ "$in_ci" -eq 1 ]]; then
        echo "FAIL  $1 is not installed, so $2 cannot run (CI=true): run 'bash scripts/ci-setup.sh' as root" >&2
        xtask_status=1
    else
        echo "==> SKIPPED $2: $1 is not installed (bash scripts/ci-setup.sh installs it; CI=true makes this a failure)" >&2
    fi
}

# Service configs, with their upstream checkers.
if command -v promtool >/dev/null 2>&1; then
    echo "==> promtool: config, rules and rule unit tests"
    promtool check config compose/config/prometheus/prometheus.yml || xtask_status=1
    promtool test rules compose/config/prometheus/tests/*.yml || xtask_status=1
else
    missing promtool "the Prometheus config and rule checks"
fi
if command -v amtool >/dev/null 2>&1; then
    echo "==> amtool: alertmanager config"
    amtool check-config compose/config/alertmanager/alertmanager.yml || xtask_status=1
else
    missing amtool "the Alertmanager config check"
fi

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
else
    missing "Compose (docker compose or docker-compose)" "the compose config checks"
    exit "$xtask_status"
fi

env_file=.env
[[ -f "$env_file" ]] || env_file=.env.example

# The environment names come from NAMED in xtask/src/environments.rs, the one
# list the xtask itself uses.
mapfile -t environments < <(
    sed -n '/^pub const NAMED/,/^];/p' xtask/src/environments.rs | grep -o '"[a-z+]*"' | tr -d '"'
)
if [[ "${#environments[@]}" -eq 0 ]]; then
    echo "error: found no environment names in NAMED in xtask/src/environments.rs" >&2
    exit 1
fi

failed=0
for environment in "${environments[@]}"; do
    files=(-f compose/base.yml)
    for overlay in dev prod betanet monitoring; do
        if [[ "+${environment}+" == *"+${overlay}+"* ]]; then
            files+=(-f "compose/${overlay}.yml")
        fi
    done
    if "${compose[@]}" --project-directory compose --env-file "$env_file" "${files[@]}" config -q; then
        echo "ok    ${environment}"
    else
        echo "FAIL  ${environment}: ${compose[*]} --project-directory compose --env-file ${env_file} ${files[*]} config -q" >&2
        failed=1
    fi
done

if [[ "$failed" -ne 0 ]]; then
    echo "==> some environments failed to render; see the lines above" >&2
    exit 1
fi
echo "==> all ${#environments[@]} environments render with ${compose[*]} (${env_file})"
if [[ "$xtask_status" -ne 0 ]]; then
    echo "==> cargo xtask check, promtool or amtool failed, or a tool is missing under CI; see the output above" >&2
fi
exit "$xtask_status"
