#!/usr/bin/env bash
# Validate the compose overlays: runs `cargo xtask check` (arguments are passed
# through, e.g. `--format json` or an environment name), then, when Compose is
# installed, asks Compose itself to render every named environment with
# `config -q`. Uses the repo-root .env if present, else .env.example.
#
# Usage: scripts/test-docker-configs.sh [cargo xtask check arguments...]
# Exit status: non-zero if the xtask check or any Compose render fails.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

echo "==> cargo xtask check $*"
xtask_status=0
cargo xtask check "$@" || xtask_status=$?

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
else
    echo "==> Compose not installed (neither 'docker compose' nor 'docker-compose'); skipping compose config checks"
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
    echo "==> cargo xtask check failed (exit ${xtask_status}); see its output above" >&2
fi
exit "$xtask_status"
